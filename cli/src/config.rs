//! The user's config file (`~/.config/shoal/config.toml`): the gateway and API key user commands
//! use when no flag or environment variable names them, at the top level or per named profile:
//!
//! ```toml
//! gateway = "https://shoal.example.org"
//! api_key = "shoal_…"
//!
//! [profiles.staging]
//! gateway = "https://staging.shoal.example.org"
//! api_key = "shoal_…"
//! ```
//!
//! A file holding a key must be readable by its owner only (as ssh insists for its keys).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::json;

use crate::api::ApiArgs;
use crate::home::{write_private, Home};

/// Which config file, and which of its profiles.
#[derive(Args, Clone, Default)]
pub(crate) struct ConfigArgs {
    /// The config file (default: `$XDG_CONFIG_HOME/shoal/config.toml`, else
    /// `~/.config/shoal/config.toml`).
    #[arg(long = "config", env = "SHOAL_CONFIG", value_name = "PATH")]
    path: Option<PathBuf>,
    /// The config file's profile `[profiles.NAME]` instead of its top-level settings.
    #[arg(long, env = "SHOAL_PROFILE", value_name = "NAME")]
    profile: Option<String>,
}

/// A gateway and the key to send it: the top level of the file, or one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// The gateway's base URL.
    pub(crate) gateway: Option<String>,
    /// The API key.
    pub(crate) api_key: Option<String>,
}

/// The whole file. Unknown keys are refused, so a misspelt one is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    gateway: Option<String>,
    api_key: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Settings>,
}

/// Settings read from a config file, and where.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The file.
    pub(crate) path: PathBuf,
    /// The profile they are from (`None`: the top level).
    pub(crate) profile: Option<String>,
    /// The settings.
    pub(crate) settings: Settings,
}

impl ConfigArgs {
    /// The config file's path: `--config`/`SHOAL_CONFIG`, else the XDG default (`None` when
    /// neither `XDG_CONFIG_HOME` nor `HOME` is set).
    pub(crate) fn path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.path {
            return Some(path.clone());
        }
        // The XDG base directory spec ignores a relative XDG_CONFIG_HOME.
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
        Some(base.join("shoal").join("config.toml"))
    }

    /// The chosen profile's settings, or `None` when there is no config file (an error if one was
    /// named, or a profile chosen).
    pub(crate) fn load(&self) -> anyhow::Result<Option<Loaded>> {
        let Some(path) = self.path() else {
            if let Some(profile) = &self.profile {
                bail!("profile {profile:?} chosen, but neither XDG_CONFIG_HOME nor HOME locates a config file");
            }
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound && self.path.is_none() && self.profile.is_none() => {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(|| format!("reading the config file {}", path.display())),
        };
        let file = parse(&path, &text)?;
        refuse_if_others_may_read(&path, &file)?;
        let settings = match &self.profile {
            None => Settings { gateway: file.gateway, api_key: file.api_key },
            Some(profile) => match file.profiles.get(profile) {
                Some(settings) => settings.clone(),
                None => bail!(
                    "{} has no profile {profile:?} (it has: {})",
                    path.display(),
                    if file.profiles.is_empty() {
                        "none".to_string()
                    } else {
                        file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            },
        };
        Ok(Some(Loaded { path, profile: self.profile.clone(), settings }))
    }
}

/// The file's contents, or an error naming the file and (from toml) the line and column.
fn parse(path: &Path, text: &str) -> anyhow::Result<ConfigFile> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{} is not a valid config file: {e}", path.display()))
}

/// Refuses a file that holds a key and that its group or others may read.
fn refuse_if_others_may_read(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let holds_a_key = file.api_key.is_some() || file.profiles.values().any(|p| p.api_key.is_some());
    let mode = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
    if holds_a_key && mode & 0o077 != 0 {
        bail!(
            "{} holds an API key but others may read it (mode {:o}); make it private with `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// `shoal config`.
#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Set the gateway or the API key in the config file (of `--profile`, if given), written
    /// readable by its owner only; comments and other settings are kept.
    Set {
        /// What to set.
        field: Field,
        /// The value; when left out it is read from standard input (keeping a key out of the
        /// shell's history and the process list).
        value: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show the gateway and key user commands would use, and where each comes from (only the
    /// key's first characters).
    Show(ApiArgs),
}

/// A setting of the config file.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Field {
    /// The gateway's base URL (`gateway`).
    Gateway,
    /// The API key (`api_key`).
    ApiKey,
}

impl Field {
    /// Its key in the file.
    fn key(self) -> &'static str {
        match self {
            Field::Gateway => "gateway",
            Field::ApiKey => "api_key",
        }
    }
}

/// The first characters of an API key: enough to tell keys apart, too few to use one.
pub(crate) fn key_prefix(key: &str) -> String {
    format!("{}…", key.chars().take(10).collect::<String>())
}

/// `shoal config set|show`.
pub(crate) async fn run(home: &Home, command: ConfigCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Set { field, value, config } => {
            let value = match value {
                Some(value) => value,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the value from standard input")?;
                    line.trim().to_string()
                }
            };
            let path = set(&config, field, &value)?;
            if json {
                crate::print_json(&json!({"config": path, "profile": config.profile, "set": field.key()}))?;
            } else {
                eprintln!("{} set in {}", field.key(), path.display());
            }
        }
        ConfigCommand::Show(api) => {
            let target = api.resolve(home)?;
            let config = api.config.path();
            if json {
                crate::print_json(&json!({
                    "config": config,
                    "profile": api.config.profile,
                    "gateway": {"url": target.gateway, "from": target.gateway_from.to_string()},
                    "api_key": target.api_key.as_ref().map(|(key, from)| {
                        json!({"prefix": key_prefix(key), "from": from.to_string()})
                    }),
                }))?;
            } else {
                let config = config.map_or("none (neither XDG_CONFIG_HOME nor HOME is set)".to_string(), |path| {
                    let missing = if path.exists() { "" } else { " (not there)" };
                    format!("{}{missing}", path.display())
                });
                println!("config   {config}");
                if let Some(profile) = &api.config.profile {
                    println!("profile  {profile}");
                }
                println!("gateway  {} (from {})", target.gateway, target.gateway_from);
                match &target.api_key {
                    Some((key, from)) => println!("api key  {} (from {from})", key_prefix(key)),
                    None => println!("api key  none"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sets `field` to `value` in the config file (creating it), keeping everything else as it was.
fn set(config: &ConfigArgs, field: Field, value: &str) -> anyhow::Result<PathBuf> {
    let Some(path) = config.path() else {
        bail!("neither XDG_CONFIG_HOME nor HOME is set; name the config file with --config");
    };
    if value.is_empty() {
        bail!("an empty {} cannot be set", field.key());
    }
    if let Field::Gateway = field {
        let url = reqwest::Url::parse(value).with_context(|| format!("{value:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("the gateway must be an http:// or https:// URL, not {value:?}");
        }
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse(&path, &text)?;
    let mut document: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("{} is not a valid config file", path.display()))?;
    let table = match &config.profile {
        None => document.as_table_mut(),
        Some(profile) => {
            let profiles = document.entry("profiles").or_insert_with(|| {
                // `[profiles.NAME]` headers rather than an empty `[profiles]` above them.
                let mut table = toml_edit::Table::new();
                table.set_implicit(true);
                toml_edit::Item::Table(table)
            });
            let profiles = profiles.as_table_mut().context("`profiles` in the config file is not a table")?;
            profiles
                .entry(profile)
                .or_insert_with(toml_edit::table)
                .as_table_mut()
                .with_context(|| format!("profile {profile:?} in the config file is not a table"))?
        }
    };
    table.insert(field.key(), toml_edit::value(value));
    let text = document.to_string();
    parse(&path, &text)?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    write_private(&tmp, text.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn args(path: &Path, profile: Option<&str>) -> ConfigArgs {
        ConfigArgs { path: Some(path.to_path_buf()), profile: profile.map(str::to_string) }
    }

    #[test]
    fn set_writes_an_owner_only_file_that_keeps_comments_and_profiles_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/config.toml");
        set(&args(&path, None), Field::Gateway, "http://127.0.0.1:9").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let with_comment = format!("# mine\n{}", std::fs::read_to_string(&path).unwrap());
        std::fs::write(&path, with_comment).unwrap();
        set(&args(&path, None), Field::ApiKey, "shoal_top").unwrap();
        set(&args(&path, Some("prod")), Field::ApiKey, "shoal_prod").unwrap();
        set(&args(&path, Some("prod")), Field::Gateway, "https://prod.example").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n") && text.contains("[profiles.prod]"), "{text}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "still private");
        let top = args(&path, None).load().unwrap().unwrap();
        assert_eq!(
            top.settings,
            Settings { gateway: Some("http://127.0.0.1:9".into()), api_key: Some("shoal_top".into()) }
        );
        let prod = args(&path, Some("prod")).load().unwrap().unwrap();
        assert_eq!(
            prod.settings,
            Settings { gateway: Some("https://prod.example".into()), api_key: Some("shoal_prod".into()) }
        );
        let missing = args(&path, Some("nope")).load().unwrap_err().to_string();
        assert!(missing.contains("no profile \"nope\"") && missing.contains("prod"), "{missing}");
        assert!(set(&args(&path, None), Field::Gateway, "ftp://x").is_err());
    }

    #[test]
    fn a_key_readable_by_others_is_refused_and_a_malformed_file_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "gateway = \"http://g\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(args(&path, None).load().unwrap().is_some(), "no key: anyone may read it");
        std::fs::write(&path, "gateway = \"http://g\"\n[profiles.x]\napi_key = \"shoal_k\"\n").unwrap();
        let refused = args(&path, None).load().unwrap_err().to_string();
        assert!(refused.contains("chmod 600") && refused.contains("644"), "{refused}");
        std::fs::write(&path, "gateway = \"http://g\"\napi-key = \"shoal_k\"\n").unwrap();
        let unknown = args(&path, None).load().unwrap_err().to_string();
        assert!(unknown.contains("line 2") && unknown.contains(&path.display().to_string()), "{unknown}");
        std::fs::write(&path, "gateway = http://g\n").unwrap();
        let malformed = args(&path, None).load().unwrap_err().to_string();
        assert!(malformed.contains("line 1"), "{malformed}");
    }

    #[test]
    fn a_named_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        assert!(args(&path, None).load().is_err());
    }
}
