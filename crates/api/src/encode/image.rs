//! Docker's image objects: `GET /images/json` entries and `GET /images/{name}/json`.

use std::collections::BTreeMap;

use cove_controller::ImageInfo;
use serde::Serialize;

use super::time;

/// A `GET /images/json` entry (`ImageSummary`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub(crate) id: String,
    pub(crate) parent_id: &'static str,
    pub(crate) repo_tags: Vec<String>,
    pub(crate) repo_digests: Vec<String>,
    pub(crate) created: i64,
    pub(crate) size: u64,
    pub(crate) shared_size: i64,
    pub(crate) virtual_size: u64,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) containers: i64,
}

/// The list entry of an image.
pub fn summary(i: &ImageInfo) -> Summary {
    Summary {
        id: i.id.clone(),
        parent_id: "",
        repo_tags: i.tags.clone(),
        repo_digests: vec![],
        created: time::unix(&i.created),
        size: i.size,
        shared_size: -1,
        virtual_size: i.size,
        labels: BTreeMap::new(),
        containers: -1,
    }
}

/// `GET /images/{name}/json` (`ImageInspect`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub(crate) id: String,
    pub(crate) repo_tags: Vec<String>,
    pub(crate) repo_digests: Vec<String>,
    pub(crate) parent: &'static str,
    pub(crate) comment: &'static str,
    pub(crate) created: String,
    pub(crate) size: u64,
    pub(crate) virtual_size: u64,
    pub(crate) config: ImageConfig,
    pub(crate) os: &'static str,
    pub(crate) architecture: &'static str,
    #[serde(rename = "RootFS")]
    pub(crate) root_fs: RootFs,
}

/// `ImageInspect.Config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) env: Vec<String>,
    pub(crate) working_dir: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    pub(crate) labels: BTreeMap<String, String>,
}

/// `ImageInspect.RootFS`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    #[serde(rename = "Type")]
    pub(crate) kind: &'static str,
}

/// The inspect object of an image.
pub fn inspect(i: &ImageInfo) -> Inspect {
    let opt = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Inspect {
        id: i.id.clone(),
        repo_tags: i.tags.clone(),
        repo_digests: vec![],
        parent: "",
        comment: "",
        created: i.created.clone(),
        size: i.size,
        virtual_size: i.size,
        config: ImageConfig {
            cmd: opt(&i.cmd),
            entrypoint: opt(&i.entrypoint),
            env: i.env.clone(),
            working_dir: i.working_dir.clone(),
            exposed_ports: i
                .exposed_ports
                .iter()
                .map(|k| (k.clone(), serde_json::Map::new()))
                .collect(),
            labels: BTreeMap::new(),
        },
        os: "linux",
        architecture: "amd64",
        root_fs: RootFs { kind: "layers" },
    }
}
