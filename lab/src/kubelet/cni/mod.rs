//! Running CNI plugins the way libcni (inside containerd) does: list order for ADD, reverse for
//! DEL, results cached per attachment so DEL and CHECK get the ADD result as `prevResult`.

pub mod request;
pub mod result;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

pub use request::{NetworkList, RuntimeConf, Verb};

/// How long one plugin may run before the call fails (containerd uses the sandbox timeout).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A CNI failure, with enough context to put in a pod event.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI config {origin}: {reason}")]
    Config { origin: String, reason: String },
    #[error("no CNI network config (*.conflist, *.conf, *.json) in {dir}")]
    NoConfig { dir: PathBuf },
    #[error("failed to find CNI plugin {plugin:?} in {dir}")]
    PluginNotFound { plugin: String, dir: PathBuf },
    #[error("plugin type={plugin:?} failed ({verb}): code {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Plugin {
        plugin: String,
        verb: &'static str,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("plugin type={plugin:?} failed ({verb}): {status}: {output}")]
    Crashed {
        plugin: String,
        verb: &'static str,
        status: String,
        output: String,
    },
    #[error("plugin type={plugin:?} ({verb}) printed no valid result: {output}")]
    BadOutput {
        plugin: String,
        verb: &'static str,
        output: String,
    },
    #[error("plugin type={plugin:?} ({verb}) did not finish within {PLUGIN_TIMEOUT:?}")]
    Timeout { plugin: String, verb: &'static str },
    #[error("running plugin type={plugin:?}: {source}")]
    Exec {
        plugin: String,
        source: std::io::Error,
    },
    #[error("CNI result cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where plugins, configs and the result cache live.
#[derive(Clone, Debug)]
pub struct Cni {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    /// libcni's cache dir (`/var/lib/cni` by default); results go to `<cache_dir>/results`.
    pub cache_dir: PathBuf,
}

impl Cni {
    /// The default network: the first config file in lexical order, as containerd picks it.
    pub fn default_network(&self) -> Result<NetworkList, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
            .map_err(|_| CniError::NoConfig {
                dir: self.conf_dir.clone(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let first = files.first().ok_or_else(|| CniError::NoConfig {
            dir: self.conf_dir.clone(),
        })?;
        let text = std::fs::read(first).map_err(|e| CniError::Config {
            origin: first.display().to_string(),
            reason: e.to_string(),
        })?;
        NetworkList::parse(&text, &first.display().to_string())
    }

    fn cache_path(&self, network: &str, rt: &RuntimeConf) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", rt.container_id, rt.ifname))
    }

    /// ADD: every plugin in order, each given the previous result; the final result is cached.
    pub async fn add(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let conf = request::plugin_config(list, plugin, prev.as_ref(), rt);
            let out = self.exec(Verb::Add, &conf, rt).await?;
            prev = Some(out.ok_or_else(|| CniError::BadOutput {
                plugin: plugin_type(plugin),
                verb: "ADD",
                output: "(empty)".into(),
            })?);
        }
        let result = prev.unwrap_or(Value::Null);
        self.write_cache(list, rt, &result)?;
        Ok(result)
    }

    /// DEL: plugins in reverse order with the cached ADD result (none if nothing was cached,
    /// as libcni does), using the cached config when there is one; then drops the cache entry.
    pub async fn del(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<(), CniError> {
        let (list, prev) = self.read_cache(list, rt)?;
        for plugin in list.plugins.iter().rev() {
            let conf = request::plugin_config(&list, plugin, prev.as_ref(), rt);
            self.exec(Verb::Del, &conf, rt).await?;
        }
        let path = self.cache_path(&list.name, rt);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CniError::Cache { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// CHECK: plugins in order with the cached ADD result (containerd's pod lifecycle never
    /// issues it; tests and tools do).
    pub async fn check(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<(), CniError> {
        let (list, prev) = self.read_cache(list, rt)?;
        for plugin in &list.plugins {
            let conf = request::plugin_config(&list, plugin, prev.as_ref(), rt);
            self.exec(Verb::Check, &conf, rt).await?;
        }
        Ok(())
    }

    fn write_cache(
        &self,
        list: &NetworkList,
        rt: &RuntimeConf,
        result: &Value,
    ) -> Result<(), CniError> {
        let path = self.cache_path(&list.name, rt);
        let entry = json!({
            "kind": "cniCacheV1",
            "containerId": rt.container_id,
            "config": list.raw,
            "ifName": rt.ifname,
            "networkName": list.name,
            "netns": rt.netns,
            "cniArgs": rt.args.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
            "capabilityArgs": rt.capability_args,
            "result": result,
        });
        let io = |source| CniError::Cache {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("cache path has a parent")).map_err(io)?;
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&entry).expect("JSON serialises"),
        )
        .map_err(io)
    }

    /// The cached (config, result) for an attachment, or the given config and no result.
    pub fn read_cache(
        &self,
        list: &NetworkList,
        rt: &RuntimeConf,
    ) -> Result<(NetworkList, Option<Value>), CniError> {
        let path = self.cache_path(&list.name, rt);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((list.clone(), None)),
            Err(source) => return Err(CniError::Cache { path, source }),
        };
        let entry: Value = serde_json::from_slice(&text).map_err(|e| CniError::Cache {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        let cached_list = entry
            .get("config")
            .and_then(|c| {
                NetworkList::parse(c.to_string().as_bytes(), &path.display().to_string()).ok()
            })
            .unwrap_or_else(|| list.clone());
        Ok((
            cached_list,
            entry.get("result").cloned().filter(|r| !r.is_null()),
        ))
    }

    /// Every cached attachment into `netns` (a path like /run/netns/x), as (config, runtime
    /// conf) ready for DEL: how a sandbox left by a crashed stand-in is released.
    pub fn cached_attachments(&self, netns: &str) -> Vec<(NetworkList, RuntimeConf)> {
        let dir = self.cache_dir.join("results");
        let mut out = vec![];
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            if v.get("netns").and_then(Value::as_str) != Some(netns) {
                continue;
            }
            let Some(list) = v
                .get("config")
                .and_then(|c| NetworkList::parse(c.to_string().as_bytes(), "cache").ok())
            else {
                continue;
            };
            let s = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let args = v
                .get("cniArgs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|kv| {
                            Some((
                                kv.get(0)?.as_str()?.to_string(),
                                kv.get(1)?.as_str()?.to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let capability_args = v
                .get("capabilityArgs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            out.push((
                list,
                RuntimeConf {
                    container_id: s("containerId"),
                    netns: netns.to_string(),
                    ifname: s("ifName"),
                    args,
                    capability_args,
                },
            ));
        }
        // Default network before loopback, the reverse of ADD.
        out.sort_by_key(|(_, rt)| rt.ifname == "lo");
        out
    }

    /// Runs one plugin; Ok(None) when it printed nothing (DEL, CHECK).
    async fn exec(
        &self,
        verb: Verb,
        conf: &Value,
        rt: &RuntimeConf,
    ) -> Result<Option<Value>, CniError> {
        let plugin = conf
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let bin = self.bin_dir.join(&plugin);
        if plugin.is_empty() || plugin.contains('/') || !bin.is_file() {
            return Err(CniError::PluginNotFound {
                plugin,
                dir: self.bin_dir.clone(),
            });
        }
        tracing::debug!(
            plugin,
            verb = verb.as_str(),
            ifname = rt.ifname,
            container = rt.container_id,
            "exec CNI plugin"
        );
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.envs(request::plugin_env(verb, rt, &self.bin_dir))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let exec_err = |source| CniError::Exec {
            plugin: plugin.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(exec_err)?;
        let stdin_bytes = serde_json::to_vec(conf).expect("JSON serialises");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let run = async {
            stdin.write_all(&stdin_bytes).await?;
            drop(stdin);
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(PLUGIN_TIMEOUT, run).await {
            Err(_) => {
                return Err(CniError::Timeout {
                    plugin,
                    verb: verb.as_str(),
                })
            }
            Ok(r) => r.map_err(exec_err)?,
        };
        if !out.stderr.is_empty() {
            tracing::debug!(plugin, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "CNI plugin stderr");
        }
        if !out.status.success() {
            if let Some((code, msg, details)) = result::parse_error(&out.stdout) {
                return Err(CniError::Plugin {
                    plugin,
                    verb: verb.as_str(),
                    code,
                    msg,
                    details,
                });
            }
            let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            });
            return Err(CniError::Crashed {
                plugin,
                verb: verb.as_str(),
                status: out.status.to_string(),
                output: text.trim().to_string(),
            });
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|_| CniError::BadOutput {
                plugin,
                verb: verb.as_str(),
                output: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            })
    }
}

fn plugin_type(p: &serde_json::Map<String, Value>) -> String {
    p.get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests;
