//! Who submits what in the simulation: users, their programs, and which catalogue items jobs
//! read, drawn through [`crate::workload::draw`] (Zipf popularity, users' own programs) — the
//! same draws as the real locality workload — and named by the synthetic catalogue's CIDs.

use cid::Cid;
use serde_json::{json, Value};

use crate::sim::catalogue::{raw_cid, Catalogue};
use crate::sim::executor::expected_output;
use crate::workload::{draw, inputs_per_job, Popularity, SplitMix};

/// One program: a CID that is never fetched, and how many items it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Its CID (its run time is drawn from it, see [`crate::sim::CostModel::compute_time`]).
    pub cid: Cid,
    /// Items per job: 1 or 2.
    pub inputs: u64,
}

/// The programs of a run: `count` of them, named from `seed`.
pub fn programs(count: usize, seed: u64) -> Vec<Program> {
    (0..count)
        .map(|p| Program {
            cid: raw_cid(format!("shoal-sim/{seed}/program/{p}").as_bytes()),
            inputs: inputs_per_job(p),
        })
        .collect()
}

/// One job to submit.
#[derive(Debug, Clone)]
pub struct SimJob {
    /// Who submits it.
    pub user: usize,
    /// Which program (an index into [`programs`]).
    pub program: usize,
    /// The spec to POST.
    pub spec: Value,
    /// The output a correct run produces.
    pub expected_output: Cid,
}

/// The job user `user` submits next: one of its programs over items drawn from `popularity`.
pub fn next_job(
    user: usize,
    own: &[usize],
    programs: &[Program],
    catalogue: &Catalogue,
    popularity: &Popularity,
    rng: &mut SplitMix,
) -> SimJob {
    let drawn = draw(own, popularity, rng);
    let program = drawn.program;
    let inputs: Vec<Cid> = drawn.items.iter().map(|&n| catalogue.cid(n)).collect();
    let spec = json!({
        "program": programs[program].cid.to_string(),
        "inputs": inputs.iter().enumerate().map(|(i, cid)| json!({"cid": cid.to_string(), "path": format!("/inputs/{i}")})).collect::<Vec<_>>(),
        "env": {"SHOAL_SIM_USER": format!("user-{user}")},
        "verification": {"mode": "none"},
    });
    SimJob { user, program, spec, expected_output: expected_output(&programs[program].cid, &inputs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reads_as_many_items_as_its_program_and_expects_their_output() {
        let catalogue = Catalogue::new(100_000_000_000, 1_000_000_000, 1);
        let programs = programs(4, 1);
        let popularity = Popularity::new(catalogue.items(), 1);
        let mut rng = SplitMix::new(9);
        for _ in 0..20 {
            let job = next_job(1, &[1, 2], &programs, &catalogue, &popularity, &mut rng);
            assert!(job.program == 1 || job.program == 2);
            let inputs = job.spec["inputs"].as_array().unwrap();
            assert_eq!(inputs.len() as u64, programs[job.program].inputs);
            let cids: Vec<Cid> = inputs.iter().map(|i| i["cid"].as_str().unwrap().parse().unwrap()).collect();
            assert_eq!(job.expected_output, expected_output(&programs[job.program].cid, &cids));
            shoal_jobs::JobSpec::from_json(job.spec.to_string().as_bytes()).unwrap();
        }
    }
}
