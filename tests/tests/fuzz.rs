//! Differential fuzzing at CI size (the full run: `cargo xtask fuzz`), and
//! the regression corpus replayed: kernel and reference model agree on the
//! verdict and on the counted reason of every frame.

use std::path::Path;

use appvm_lab::{fuzz, sys::require_privileges};

/// No disagreement in `tried` frames, and at least `min_reasons` reasons
/// reached (a fuzzer stuck on one path proves little).
#[track_caller]
fn assert_agreement(report: &fuzz::Report, tried: u64, min_reasons: usize) {
    let shown: Vec<String> = report
        .disagreements
        .iter()
        .take(5)
        .map(|d| {
            format!(
                "{} policy {} model {} kernel {}: {:02x?}",
                d.program, d.policy, d.model, d.kernel, d.frame
            )
        })
        .collect();
    assert!(
        report.disagreements.is_empty(),
        "{} disagreements, e.g. {shown:#?}",
        report.disagreements.len()
    );
    assert_eq!(report.tried, tried);
    assert!(
        report.reasons.len() >= min_reasons,
        "only {} reasons reached: {:?}",
        report.reasons.len(),
        report.reasons.keys()
    );
}

#[test]
fn kernel_and_model_agree_on_random_and_mutated_frames() {
    require_privileges();
    let report = fuzz::run(25_000, 0x5eed).expect("fuzz");
    assert_agreement(&report, 100_000, 28);
}

#[test]
fn regression_corpus_replays_clean() {
    require_privileges();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/vm");
    let (frames, found) = fuzz::replay(&dir).expect("replay");
    assert!(frames >= 10, "corpus has {frames} frames");
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn backend_programs_agree_with_their_model() {
    require_privileges();
    let report = fuzz::backend::run(10_000, 0xbac0).expect("fuzz");
    assert_agreement(&report, 40_000, 26);
}
