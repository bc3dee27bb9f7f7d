//! Protocol tests for plugin invocation: chaining, cache, reverse DEL, error objects. The
//! "plugins" here are small shell scripts that record exactly what they were given.

use super::*;
use crate::kubelet::testutil::tempdir;
use serde_json::json;
use std::path::Path;

/// A plugin that appends "<COMMAND> <type> <stdin>" to $dir/calls and answers with a result
/// naming itself (ADD) or nothing (DEL/CHECK); type "failing" returns a CNI error object.
fn install_plugin(dir: &Path, name: &str) {
    let script = format!(
        r#"#!/bin/sh
in=$(cat)
printf '%s %s %s|%s\n' "$CNI_COMMAND" {name} "$CNI_IFNAME" "$in" >> {calls}
if [ {name} = failing ]; then
  echo '{{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"subnet missing"}}'
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}}],"ips":[{{"address":"10.200.9.{n}/24","interface":0}}],"by":"{name}"}}'
fi
"#,
        calls = dir.join("calls").display(),
        n = name.len(),
    );
    let p = dir.join("bin").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn calls(dir: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (head, body) = l.split_once('|').unwrap();
            (head.to_string(), serde_json::from_str(body).unwrap())
        })
        .collect()
}

fn rt() -> RuntimeConf {
    RuntimeConf {
        container_id: "c".repeat(64),
        netns: "/run/netns/wk-test".into(),
        ifname: "eth0".into(),
        args: RuntimeConf::pod_args("ns", "p", &"c".repeat(64), "u"),
        capability_args: serde_json::Map::new(),
    }
}

#[tokio::test]
async fn add_chains_results_and_del_reverses_with_cached_result() {
    let dir = tempdir("wk-cni-chain");
    install_plugin(&dir, "first");
    install_plugin(&dir, "second");
    let cni = Cni {
        bin_dir: dir.join("bin"),
        conf_dir: dir.join("net.d"),
        cache_dir: dir.join("cache"),
    };
    let list = NetworkList::parse(
        br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"first"},{"type":"second"}]}"#,
        "t",
    )
    .unwrap();

    let result = cni.add(&list, &rt()).await.unwrap();
    assert_eq!(result["by"], "second");
    assert_eq!(
        result::pod_ipv4(&result, "eth0"),
        Some("10.200.9.6".parse().unwrap())
    );
    let c = calls(&dir);
    assert_eq!(
        c.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["ADD first eth0", "ADD second eth0"]
    );
    assert!(c[0].1.get("prevResult").is_none());
    assert_eq!(c[1].1["prevResult"]["by"], "first");
    assert!(dir
        .join("cache/results")
        .join(format!("net-{}-eth0", "c".repeat(64)))
        .is_file());

    let found = cni.cached_attachments("/run/netns/wk-test");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, rt(), "the cache gives back what ADD ran with");
    assert_eq!(found[0].0.name, "net");
    assert!(cni.cached_attachments("/run/netns/other").is_empty());

    std::fs::remove_file(dir.join("calls")).unwrap();
    cni.check(&list, &rt()).await.unwrap();
    cni.del(&list, &rt()).await.unwrap();
    let c = calls(&dir);
    assert_eq!(
        c.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        [
            "CHECK first eth0",
            "CHECK second eth0",
            "DEL second eth0",
            "DEL first eth0"
        ]
    );
    for (_, conf) in &c {
        assert_eq!(
            conf["prevResult"]["by"], "second",
            "DEL/CHECK get the final ADD result"
        );
    }
    assert!(!dir
        .join("cache/results")
        .join(format!("net-{}-eth0", "c".repeat(64)))
        .exists());

    // A second DEL has no cache: it still runs, without prevResult (libcni behaviour).
    std::fs::remove_file(dir.join("calls")).unwrap();
    cni.del(&list, &rt()).await.unwrap();
    assert!(calls(&dir)
        .iter()
        .all(|(_, c)| c.get("prevResult").is_none()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn plugin_error_object_becomes_a_typed_error() {
    let dir = tempdir("wk-cni-err");
    install_plugin(&dir, "failing");
    let cni = Cni {
        bin_dir: dir.join("bin"),
        conf_dir: dir.join("net.d"),
        cache_dir: dir.join("cache"),
    };
    let list = NetworkList::parse(
        br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"failing"}]}"#,
        "t",
    )
    .unwrap();
    let err = cni.add(&list, &rt()).await.unwrap_err();
    match &err {
        CniError::Plugin {
            plugin,
            code,
            msg,
            details,
            ..
        } => {
            assert_eq!(
                (plugin.as_str(), *code, msg.as_str(), details.as_str()),
                ("failing", 7, "invalid network config", "subnet missing")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("code 7: invalid network config (subnet missing)"),
        "{err}"
    );
    let missing = NetworkList::parse(
        br#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"nope"}]}"#,
        "t",
    )
    .unwrap();
    assert!(matches!(
        cni.add(&missing, &rt()).await,
        Err(CniError::PluginNotFound { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_network_is_the_first_config_in_lexical_order() {
    let dir = tempdir("wk-cni-conf");
    let conf = dir.join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("20-b.conflist"),
        json!({"cniVersion":"1.0.0","name":"b","plugins":[{"type":"x"}]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        conf.join("10-a.conf"),
        json!({"cniVersion":"0.4.0","name":"a","type":"y"}).to_string(),
    )
    .unwrap();
    std::fs::write(conf.join("00-ignored.txt"), "x").unwrap();
    let cni = Cni {
        bin_dir: dir.join("bin"),
        conf_dir: conf,
        cache_dir: dir.join("cache"),
    };
    assert_eq!(cni.default_network().unwrap().name, "a");
    std::fs::remove_dir_all(&dir).unwrap();
}
