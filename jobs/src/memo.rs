//! Memoisation by invocation CID: a tenant's submission of an invocation whose earlier job's
//! result was *accepted* (see [`crate::Acceptance::is_accepted`]) is answered at once from that
//! result, by a new job created already `succeeded` and naming the job it came from
//! (`memoised_from`); nothing runs, nothing is queued.
//!
//! The memo ([`keys::memo`]) names the job whose result answers; it is written when (and only
//! when) the verifier's verdict makes a result accepted, by the script recording the verdict,
//! and dropped by the script recording any verdict that does not accept it, or reopening the
//! job. A job submitted for memoisation gets an id whose tag is the memo's
//! ([`keys::memo_tag`]): the memo, the jobs it can name and the new job live in one slot, so
//! the submission's one script finds the memo, checks the job it names is still succeeded and
//! verified, and creates the answer — or, when there is none, the queued job, which remembers
//! its memo for its verdict.

use std::time::Duration;

use crate::keys::{self, job_tag};
use crate::model::{Verification, VerificationOutcome};

/// How long an accepted result answers identical submissions unless the gateway is configured
/// otherwise: a week.
pub const DEFAULT_MEMO_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A new job id (a ULID) whose keys have tag `tag`. A ULID's tag is a hash of it, uniform over
/// [`keys::JOB_TAGS`] tags, so this draws that many ids on average (a few microseconds).
pub(crate) fn job_id_tagged(tag: &str) -> String {
    loop {
        let id = ulid::Ulid::new().to_string();
        if job_tag(&id) == tag {
            return id;
        }
    }
}

/// Whether `verification`, recorded on a succeeded job that is not fanned out, makes its
/// result accepted: the verifier re-executed it and agreed, or replaced it by its own
/// re-execution (the two accepted [`crate::Acceptance`]s, `verified` and `corrected`).
pub(crate) fn accepts(verification: &Verification) -> bool {
    verification.failed.is_none()
        && (verification.corrected.is_some() || verification.outcome == VerificationOutcome::Agreed)
}

/// The memo of a job of `tenant` for `invocation` that may answer or be answered, and for how
/// long an accepted result answers: the key and the expiry in ms, as the create script takes
/// them.
pub(crate) fn memo_of(tenant: &crate::Tenant, invocation: &str, ttl: Duration) -> (String, u64) {
    (keys::memo(tenant, invocation), ttl.as_millis().max(1) as u64)
}

// Lua functions for the scripts that record a verdict or reopen a job (after the `STATES`
// prelude, so KEYS[1] is the job). A memoisable job's record names its memo (`memo`) and the
// memo's expiry (`memo_ttl_ms`); a job without them was not submitted for memoisation.
// `remember` sets the memo to the job when its verdict accepts its result (`accepted` '1') and
// it is succeeded, and otherwise drops it if it names this job; `forget` drops it so.
pub(crate) const REMEMBER: &str = r#"
local function forget(id)
  local memo = redis.call('HGET', KEYS[1], 'memo')
  if memo and redis.call('GET', memo) == id then redis.call('DEL', memo) end
end
local function remember(id, state, accepted)
  local memo = redis.call('HMGET', KEYS[1], 'memo', 'memo_ttl_ms')
  if not memo[1] then return end
  if state == 'succeeded' and accepted == '1' then
    redis.call('SET', memo[1], id, 'PX', memo[2])
  else
    forget(id)
  end
end
"#;

// The start of the create script (after the `STATES` prelude, before `CREATE`), for a job
// submitted for memoisation: ARGV[13] is its memo and ARGV[14] the memo's expiry (both '' and 0
// otherwise), and the new job's id (ARGV[5]) has the memo's tag. If the memo names a job of the
// same tenant and invocation that is still succeeded with a verdict (the scripts keep the memo
// only while that verdict accepts it), the new job is created succeeded with that job's result
// and verification, naming it in `memoised_from`, its end and verdict recorded as changes (for
// those following it) and announced if it asked for webhooks, and the script answers 2 with the
// new job (the store's `created`). A memo naming anything else is dropped, and `CREATE` goes on
// to queue the job, recording its memo. The memo and the named job's record (the new job's key
// with the other id) are named here rather than passed as keys, as the tenant indexes are: they
// share the new job's tag, so its slot.
pub(crate) const ANSWER: &str = r#"
if ARGV[13] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return created(0) end
  local source = redis.call('GET', ARGV[13])
  if source then
    local record = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[5]) .. source
    local from = redis.call('HMGET', record, 'state', 'tenant', 'invocation', 'result', 'verification')
    if from[1] == 'succeeded' and from[2] == ARGV[9] and from[3] == ARGV[2] and from[4] and from[5] then
      local fields = {'spec', ARGV[1], 'invocation', ARGV[2], 'state', 'succeeded', 'created_at_ms', ARGV[3],
        'updated_at_ms', ARGV[3], 'shard', ARGV[4], 'max_attempts', ARGV[6], 'backoff_ms', ARGV[8],
        'tenant', ARGV[9], 'result', from[4], 'verification', from[5], 'memoised_from', source}
      if ARGV[10] == '1' then table.insert(fields, 'notify') table.insert(fields, '1') end
      redis.call('HSET', KEYS[1], unpack(fields))
      redis.call('ZADD', KEYS[5], ARGV[3], ARGV[5])
      redis.call('ZADD', KEYS[5] .. ':tenant:' .. ARGV[9], ARGV[3], ARGV[5])
      changed(ARGV[5], ARGV[9], 'succeeded')
      changed(ARGV[5], ARGV[9], 'succeeded ' .. cjson.decode(from[5]).outcome.verdict)
      announce(ARGV[5], 'job.succeeded')
      announce(ARGV[5], 'job.verified')
      return created(2)
    end
    redis.call('DEL', ARGV[13])
  end
end
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutionResult, Failure, FailureReason, Job, JobSpec, JobState};

    #[test]
    fn tagged_ids_have_their_tag() {
        for tag in ["j00", "j17", "j63"] {
            let id = job_id_tagged(tag);
            assert_eq!(job_tag(&id), tag);
            assert!(id.parse::<ulid::Ulid>().is_ok(), "{id} is a ULID");
        }
    }

    #[test]
    fn a_memo_shares_its_slot_with_the_jobs_it_can_name() {
        let tenant: crate::Tenant = "acme".parse().unwrap();
        let invocation = "bagaaierasords4njcts6vs7qvdjfcvgnume4hqohf65zsfguprqphs3icwea";
        let (memo, _) = memo_of(&tenant, invocation, DEFAULT_MEMO_TTL);
        let id = job_id_tagged(&keys::memo_tag(&tenant, invocation));
        assert_eq!(keys::cluster_slot(&memo), keys::cluster_slot(&keys::JobKeys::of(&id).job));
        let other: crate::Tenant = "other".parse().unwrap();
        assert_ne!(memo, memo_of(&other, invocation, DEFAULT_MEMO_TTL).0, "memos are per tenant");
    }

    fn result(output: &str) -> ExecutionResult {
        serde_json::from_value(serde_json::json!({
            "exit_code": 0, "fuel_consumed": 1, "output": output, "stdout": output, "stderr": output,
            "fetch_ms": 0, "run_ms": 0,
        }))
        .expect("a result")
    }

    /// Every verdict, as the verifier records them.
    fn verdicts() -> Vec<Verification> {
        let cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
        let failure =
            Failure { reason: FailureReason::Trap, message: "trap".into(), stderr: None, fuel_consumed: None };
        let outcomes = vec![
            VerificationOutcome::Agreed,
            VerificationOutcome::Vouched,
            VerificationOutcome::Replicated { workers: vec!["a".into(), "b".into()] },
            VerificationOutcome::Disagreed {
                worker: "a".into(),
                reported: Box::new(result(cid)),
                recomputed: Box::new(result(cid)),
            },
            VerificationOutcome::Contradicted {
                worker: "a".into(),
                reported: Box::new(result(cid)),
                failure: failure.clone(),
            },
            VerificationOutcome::Denied { worker: "a".into(), failure: failure.clone() },
            VerificationOutcome::Refused { worker: "a".into(), reason: "forged".into() },
            VerificationOutcome::Inconclusive { reason: "content gone".into() },
        ];
        let mut all = Vec::new();
        for outcome in outcomes {
            let plain = Verification {
                verifier: "v".into(),
                at_ms: 1,
                outcome,
                corrected: None,
                failed: None,
                replicas: Vec::new(),
                compared: Vec::new(),
            };
            all.push(Verification { corrected: Some(result(cid)), ..plain.clone() });
            all.push(Verification { failed: Some(failure.clone()), ..plain.clone() });
            all.push(plain);
        }
        all
    }

    /// The memo follows the one definition of an accepted result: for every verdict, a job the
    /// verdict leaves succeeded is memoised exactly when its acceptance is accepted.
    #[test]
    fn only_accepted_results_are_remembered() {
        let spec = JobSpec::from_json(br#"{"program":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"}"#)
            .expect("a valid spec");
        assert!(spec.memoisable());
        let mut remembered = 0;
        for verification in verdicts() {
            let mut job: Job = serde_json::from_value(serde_json::json!({
                "id": "job-1", "invocation": crate::ContentId(spec.invocation_cid()), "spec": spec,
                "tenant": "acme", "state": JobState::Succeeded, "shard": 0,
                "created_at_ms": 1, "updated_at_ms": 2,
            }))
            .expect("a job");
            // The store moves a job whose verdict failed it to `failed`.
            if verification.failed.is_some() {
                job.state = JobState::Failed;
            }
            job.verification = Some(verification.clone());
            let accepted = job.acceptance().is_some_and(crate::Acceptance::is_accepted);
            assert_eq!(accepts(&verification) && job.state == JobState::Succeeded, accepted, "{verification:?}");
            remembered += usize::from(accepted);
        }
        assert_eq!(remembered, 9, "agreed, and every corrected verdict");
    }

    #[test]
    fn only_deterministic_unfanned_verified_wasm_jobs_are_memoisable() {
        let spec = |extra: &str| {
            JobSpec::from_json(
                format!(r#"{{"program":"bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"{extra}}}"#)
                    .as_bytes(),
            )
            .expect("a valid spec")
        };
        assert!(spec("").memoisable());
        assert!(spec(r#","verification":{"mode":"always"}"#).memoisable());
        assert!(!spec(r#","memoise":false"#).memoisable());
        assert!(!spec(r#","verification":{"mode":"none"}"#).memoisable());
        let tolerance = r#"{"mode":"always","compare":{"kind":"tolerance","fields":[{"file":"m.json","json":"/a","absolute":0.1}]}}"#;
        assert!(!spec(&format!(r#","determinism":"nondeterministic","writes":["m.json"],"verification":{tolerance}"#))
            .memoisable());
        let opted_out = spec(r#","memoise":false"#);
        assert_ne!(opted_out.invocation_cid(), spec("").invocation_cid());
        assert_eq!(spec(r#","memoise":true"#).invocation_cid(), spec("").invocation_cid(), "the default is left out");
    }
}
