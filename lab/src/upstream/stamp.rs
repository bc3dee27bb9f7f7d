//! The stamp that marks a component done: written only after its binaries exist and ran, and
//! trusted only while the recipe matches and the binaries are still there.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::BuildError;

const STAMP_FILE: &str = "stamp.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub component: String,
    pub version: String,
    /// [`super::component::Recipe::fingerprint`] of the build.
    pub recipe: String,
    /// `go1.26.8`
    pub go: String,
    pub built_at: String,
    pub build_seconds: f64,
    pub binaries: Vec<StampedBinary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StampedBinary {
    pub name: String,
    /// First line of what its version command printed.
    pub reports: String,
}

impl Stamp {
    pub fn read(dir: &Path) -> Option<Stamp> {
        let text = std::fs::read_to_string(dir.join(STAMP_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written via a temporary file and rename, so a crash never leaves half a stamp.
    pub fn write(&self, dir: &Path) -> Result<(), BuildError> {
        let path = dir.join(STAMP_FILE);
        let tmp = dir.join(format!("{STAMP_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self).expect("stamp serializes");
        std::fs::write(&tmp, json + "\n").map_err(BuildError::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(BuildError::io("rename", &path))
    }

    pub fn remove(dir: &Path) -> Result<(), BuildError> {
        let path = dir.join(STAMP_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BuildError::io("remove", path)(e))
            }
            _ => Ok(()),
        }
    }

    /// The build can be reused: same recipe, and every binary is still an executable file.
    pub fn is_fresh(&self, recipe: &str, bin_dir: &Path, binaries: &[&str]) -> bool {
        use std::os::unix::fs::PermissionsExt;
        self.recipe == recipe
            && binaries.iter().all(|b| {
                std::fs::metadata(bin_dir.join(b))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }
}

/// Now as `2026-11-21T05:09:47Z` (Kubernetes' `buildDate` format).
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_utc(secs)
}

fn rfc3339_utc(unix: u64) -> String {
    let (days, rem) = (unix / 86_400, unix % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), H. Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_237_787), "2026-11-21T05:09:47Z");
    }

    fn stamp() -> Stamp {
        Stamp {
            component: "etcd".into(),
            version: "v3.6.16".into(),
            recipe: "r1".into(),
            go: "go1.26.8".into(),
            built_at: "2026-11-21T05:09:47Z".into(),
            build_seconds: 61.0,
            binaries: vec![StampedBinary {
                name: "etcd".into(),
                reports: "etcd Version: 3.6.16".into(),
            }],
        }
    }

    #[test]
    fn stamp_is_fresh_only_with_same_recipe_and_executable_binaries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("weft-upstream-stamp-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let s = stamp();
        s.write(&dir).unwrap();
        let back = Stamp::read(&dir).unwrap();
        assert_eq!(back, s);

        assert!(!back.is_fresh("r1", &bin, &["etcd"]), "binary missing");
        std::fs::write(bin.join("etcd"), "#!/bin/sh\n").unwrap();
        assert!(
            !back.is_fresh("r1", &bin, &["etcd"]),
            "binary not executable"
        );
        std::fs::set_permissions(bin.join("etcd"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(back.is_fresh("r1", &bin, &["etcd"]));
        assert!(!back.is_fresh("r2", &bin, &["etcd"]), "recipe changed");

        Stamp::remove(&dir).unwrap();
        assert!(Stamp::read(&dir).is_none());
        Stamp::remove(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
