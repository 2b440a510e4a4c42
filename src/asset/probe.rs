//! Placeholder until the full prober lands: same interface.
use super::sniff::Sniffed;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub duration_seconds: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeError {
    pub code: &'static str,
    pub message: String,
}

pub fn probe(_path: &std::path::Path, _sniffed: &Sniffed) -> Result<Probe, ProbeError> {
    Ok(Probe::default())
}
