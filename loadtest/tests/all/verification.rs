//! The ML adversaries against both verification strategies, through `shoal-loadtest
//! verification` on small stacks: the comparator catches and quarantines every kind; the
//! tolerance on the claimed accuracy, which never looks at the weights, lets through random
//! weights, another job's weights and a claim raised within the tolerance, and catches only the
//! few-epochs result, whose true accuracy is far below an honest run's.
//!
//! Needs `cargo build -p shoal-cli` and the digits (`scripts/fetch-data.sh`).

use shoal_loadtest::verification::report::{AdversaryFigures, JobRole};
use shoal_loadtest::{Mode, RunReport};

use crate::common::{one_stack_at_a_time, verification};

fn kind<'a>(adversaries: &'a [AdversaryFigures], name: &str) -> &'a AdversaryFigures {
    adversaries.iter().find(|a| a.kind == name).unwrap_or_else(|| panic!("{name} did not run"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_comparator_catches_every_ml_lie_and_the_tolerance_misses_those_that_only_look_right() {
    let _one = one_stack_at_a_time().await;
    let out = tempfile::tempdir().unwrap();
    let (options, command) = verification(&[
        "--honest=2",
        "--lies=1",
        // Within the tolerance (0.04) even with two honest runs 0.03 apart, so the tolerance's
        // miss does not depend on the seeds drawn.
        "--raise=0.005",
        "--deadline-secs=200",
        "--work-dir",
        out.path().join("work").to_str().unwrap(),
    ]);
    let report = options.run(command).await.unwrap();
    let written = report.write(&out.path().join("report")).unwrap();
    let md = std::fs::read_to_string(&written[1]).unwrap();

    for run in &report.strategies {
        assert_eq!((run.honest.agreed, run.honest.false_disagreements), (2, 0), "{}: {:?}", run.strategy, run.honest);
        assert!(run.honest.accuracy.min >= 0.93, "{}: honest runs reach 0.93: {:?}", run.strategy, run.honest.accuracy);
    }

    let comparator = report.strategy("comparator").unwrap();
    for adversary in &comparator.adversaries {
        let lie = adversary.jobs.iter().find(|job| job.role == JobRole::Lie).unwrap();
        assert!(lie.handled, "{}: the adversary settled its lie: {adversary:?}", adversary.kind);
        assert_eq!(lie.verdict, "disagreed", "{}: {}", adversary.kind, lie.said);
        assert!(lie.said.contains("ml-compare exit 1"), "{}: {}", adversary.kind, lie.said);
        assert!(adversary.quarantined, "{} is quarantined: {adversary:?}", adversary.kind);
        assert!(adversary.reason.as_deref().unwrap_or("").contains("re-execution contradicts"), "{adversary:?}");
    }
    // Each caught for what it is: claims its weights do not back, or a result of other epochs.
    let said = |name: &str| kind(&comparator.adversaries, name).jobs.last().unwrap().said.clone();
    assert!(said("fabricated-metrics").contains("claimed_accuracy_mismatch"), "{}", said("fabricated-metrics"));
    assert!(said("random-weights").contains("claimed_accuracy_mismatch"), "{}", said("random-weights"));
    assert!(said("stolen-weights").contains("epochs_mismatch"), "{}", said("stolen-weights"));
    assert!(said("few-epochs").contains("accuracy_gap"), "{}", said("few-epochs"));
    // The donor job of stolen-weights is an honest 20-epoch run, and agreed.
    let donor = kind(&comparator.adversaries, "stolen-weights").jobs.iter().find(|job| job.role == JobRole::Donor);
    assert_eq!(donor.map(|job| job.verdict.as_str()), Some("agreed"));

    let tolerance = report.strategy("tolerance").unwrap();
    assert_eq!(tolerance.missed_kinds(), ["fabricated-metrics", "stolen-weights", "random-weights"], "{md}");
    for name in ["fabricated-metrics", "stolen-weights", "random-weights"] {
        let adversary = kind(&tolerance.adversaries, name);
        assert_eq!((adversary.lies, adversary.missed, adversary.quarantined), (1, 1, false), "{adversary:?}");
    }
    let few_epochs = kind(&tolerance.adversaries, "few-epochs");
    assert_eq!((few_epochs.caught, few_epochs.quarantined), (1, true), "{few_epochs:?}");

    assert!(report.passed(), "{}", report.summary());
    assert!(md.contains("| stolen-weights | **missed 1 of 1** | caught 1 of 1, quarantined |"), "{md}");
}
