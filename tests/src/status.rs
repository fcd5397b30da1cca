//! Reading `appvm ... status --json` output in tests.

/// Packets of `reason` in a status object's `counters` (panics if absent).
pub fn counter(status: &serde_json::Value, reason: &str) -> u64 {
    status["counters"]
        .as_array()
        .expect("counters")
        .iter()
        .find(|c| c["reason"] == reason)
        .and_then(|c| c["packets"].as_u64())
        .unwrap_or_else(|| panic!("no counter {reason}"))
}
