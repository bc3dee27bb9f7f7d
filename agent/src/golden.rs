//! Golden scenario files shared by the pure translations' tests (`lb/testdata`,
//! `policy/testdata`): txtar archives with input sections and a `want` section holding the
//! expected text. `UPDATE_GOLDEN=1` rewrites `want` after a deliberate change; review the diff.

use std::path::{Path, PathBuf};

/// One txtar archive: a leading comment and named sections.
pub struct Txtar {
    comment: String,
    sections: Vec<(String, String)>,
}

impl Txtar {
    pub fn parse(text: &str) -> Self {
        let mut comment = String::new();
        let mut sections: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let marker = line
                .strip_prefix("-- ")
                .and_then(|l| l.strip_suffix(" --"))
                .map(str::trim);
            match (marker, sections.last_mut()) {
                (Some(name), _) => sections.push((name.to_owned(), String::new())),
                (None, Some((_, body))) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {
                    comment.push_str(line);
                    comment.push('\n');
                }
            }
        }
        Self { comment, sections }
    }

    /// A section that may be absent.
    pub fn section_opt(&self, name: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_str())
    }

    pub fn section(&self, name: &str) -> &str {
        self.section_opt(name)
            .unwrap_or_else(|| panic!("no `-- {name} --` section"))
    }

    fn print(&self) -> String {
        let mut out = self.comment.clone();
        for (name, body) in &self.sections {
            out.push_str(&format!("-- {name} --\n{body}"));
        }
        out
    }
}

/// Run every `*.txtar` in `dir` (at least `min` of them) through `run` and compare with its
/// `want` section; with `UPDATE_GOLDEN` set, rewrite the sections that differ instead.
pub fn check_scenarios(dir: &Path, min: usize, run: impl Fn(&Txtar) -> String) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("testdata dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txtar"))
        .collect();
    files.sort();
    assert!(files.len() >= min, "scenarios missing: {files:?}");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut archive = Txtar::parse(&text);
        let got = run(&archive);
        let want = archive.section("want").to_owned();
        if got != want {
            if update {
                for (name, body) in &mut archive.sections {
                    if name == "want" {
                        *body = got.clone();
                    }
                }
                std::fs::write(path, archive.print()).unwrap();
            } else {
                failures.push(format!(
                    "{}:\n--- want\n{want}--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txtar_round_trips() {
        let text = "comment\n-- a --\none\n-- b --\ntwo\nthree\n";
        let t = Txtar::parse(text);
        assert_eq!(t.comment, "comment\n");
        assert_eq!(t.section("b"), "two\nthree\n");
        assert_eq!(t.print(), text);
    }
}
