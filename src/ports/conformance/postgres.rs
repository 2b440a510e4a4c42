//! A throw-away PostgreSQL cluster for the conformance suite, started by
//! `scripts/postgres-start` (which `scripts/test` makes sure can run) and
//! stopped on drop.

use std::path::Path;
use std::process::Command;

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub url: String,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-start");
        let out = Command::new(&script).arg(dir.path()).output().expect("running scripts/postgres-start");
        assert!(
            out.status.success(),
            "scripts/postgres-start failed (scripts/test installs PostgreSQL when it is missing): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("DATABASE_URL=").map(str::to_string))
            .expect("postgres-start printed no DATABASE_URL");
        PgCluster { dir, url }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-stop");
        let _ = Command::new(&script).arg(self.dir.path()).status();
    }
}
