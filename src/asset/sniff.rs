//! Placeholder until the full sniffer lands: same interface.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetType {
    Audio,
    Video,
    Image,
    Document,
    Archive,
    Other,
}

impl AssetType {
    pub const ALL: [AssetType; 6] = [
        AssetType::Audio,
        AssetType::Video,
        AssetType::Image,
        AssetType::Document,
        AssetType::Archive,
        AssetType::Other,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            AssetType::Audio => "audio",
            AssetType::Video => "video",
            AssetType::Image => "image",
            AssetType::Document => "document",
            AssetType::Archive => "archive",
            AssetType::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sniffed {
    pub kind: AssetType,
    pub extension: Option<String>,
    pub content_type: String,
}

pub fn sniff(prefix: &[u8]) -> Sniffed {
    match infer::get(prefix) {
        Some(t) => Sniffed {
            kind: match t.matcher_type() {
                infer::MatcherType::Audio => AssetType::Audio,
                infer::MatcherType::Video => AssetType::Video,
                infer::MatcherType::Image => AssetType::Image,
                infer::MatcherType::Archive => AssetType::Archive,
                infer::MatcherType::Doc => AssetType::Document,
                _ => AssetType::Other,
            },
            extension: Some(t.extension().to_string()),
            content_type: t.mime_type().to_string(),
        },
        None => Sniffed {
            kind: AssetType::Other,
            extension: None,
            content_type: "application/octet-stream".into(),
        },
    }
}

pub fn recognised() -> Vec<(AssetType, &'static str, &'static str)> {
    vec![(AssetType::Audio, "mp3", "audio/mpeg")]
}
