//! Label selectors (`matchLabels` + `matchExpressions`), parsed once and matched many times.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Pod or namespace labels.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector; all of a selector's requirements must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// The label has one of these values (`matchLabels` entries are `In` with one value).
    In(String, Vec<String>),
    /// The label is absent or has none of these values.
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    /// Never holds: what a malformed selector becomes, so it selects nothing.
    Impossible,
}

/// A parsed selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// A selector the API server should have refused; the policy that holds it matches nothing
/// there rather than everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unknown operator {operator:?} for key {key:?}")]
    UnknownOperator { key: String, operator: String },
    #[error("operator {operator} for key {key:?} needs at least one value")]
    NoValues { key: String, operator: &'static str },
    #[error("operator {operator} for key {key:?} takes no values")]
    UnexpectedValues { key: String, operator: &'static str },
}

impl Selector {
    /// The selector matching everything (`{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector matching nothing (not expressible in the API; used for malformed ones).
    pub fn nothing() -> Self {
        Self {
            requirements: vec![Requirement::Impossible],
        }
    }

    /// Parse a Kubernetes `LabelSelector`.
    pub fn parse(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = sel
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for e in sel.match_expressions.iter().flatten() {
            let key = e.key.clone();
            let values = e.values.clone().unwrap_or_default();
            let needs_values = |operator: &'static str| {
                if values.is_empty() {
                    Err(SelectorError::NoValues {
                        key: key.clone(),
                        operator,
                    })
                } else {
                    Ok(values.clone())
                }
            };
            let no_values = |operator: &'static str| {
                if values.is_empty() {
                    Ok(())
                } else {
                    Err(SelectorError::UnexpectedValues {
                        key: key.clone(),
                        operator,
                    })
                }
            };
            requirements.push(match e.operator.as_str() {
                "In" => Requirement::In(key.clone(), needs_values("In")?),
                "NotIn" => Requirement::NotIn(key.clone(), needs_values("NotIn")?),
                "Exists" => no_values("Exists").map(|()| Requirement::Exists(key.clone()))?,
                "DoesNotExist" => {
                    no_values("DoesNotExist").map(|()| Requirement::DoesNotExist(key.clone()))?
                }
                other => {
                    return Err(SelectorError::UnknownOperator {
                        key,
                        operator: other.to_owned(),
                    })
                }
            });
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Impossible => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(json: serde_json::Value) -> Result<Selector, SelectorError> {
        Selector::parse(&serde_json::from_value(json).unwrap())
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        let s = sel(serde_json::json!({})).unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_and_expressions_all_hold() {
        let s = sel(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let ok = labels(&[("app", "web"), ("tier", "edge"), ("team", "x")]);
        assert!(s.matches(&ok));
        let mut l = ok.clone();
        l.insert("env".into(), "dev".into());
        assert!(s.matches(&l), "NotIn holds for another value");
        l.insert("env".into(), "prod".into());
        assert!(!s.matches(&l), "NotIn fails on a listed value");
        let mut l = ok.clone();
        l.insert("legacy".into(), "".into());
        assert!(!s.matches(&l), "DoesNotExist fails on an empty value too");
        let mut l = ok.clone();
        l.remove("team");
        assert!(!s.matches(&l), "Exists needs the key");
        let mut l = ok.clone();
        l.insert("tier".into(), "back".into());
        assert!(!s.matches(&l), "In needs a listed value");
        let mut l = ok;
        l.insert("app".into(), "db".into());
        assert!(!s.matches(&l), "matchLabels needs the exact value");
    }

    #[test]
    fn not_in_matches_an_absent_label() {
        let s = sel(serde_json::json!({"matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod"]}]}))
        .unwrap();
        assert!(s.matches(&labels(&[])));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        let bad = [
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}),
        ];
        for b in bad {
            assert!(sel(b.clone()).is_err(), "{b} should not parse");
        }
    }
}
