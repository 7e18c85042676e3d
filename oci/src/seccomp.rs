//! The containers' seccomp filter, converted from the default profile that
//! Debian's `golang-github-containers-common` ships in Docker/moby format
//! into the runtime spec's `linux.seccomp`, the way Docker and Podman apply
//! it: entries for other architectures dropped, and entries conditional on
//! capabilities kept or dropped for the sandbox's empty capability set.

use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use serde::Deserialize;
use serde_json::{json, Value};

/// Where containers-common installs its default profile on Debian.
pub const DEFAULT_SECCOMP_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Why a seccomp profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file cannot be read.
    #[error("cannot read the seccomp profile {path} (install golang-github-containers-common: scripts/install-deps.sh)")]
    Read {
        /// The profile's path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The profile is not a moby-format seccomp profile.
    #[error("invalid seccomp profile {path}: {reason}")]
    Invalid {
        /// The profile's path.
        path: String,
        /// The parser's message.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Value>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Reads the moby-format profile at `path` and converts it for this host's
/// architecture and kernel and for a process without capabilities.
pub fn load_profile(path: impl AsRef<Path>) -> Result<LinuxSeccomp, SeccompError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|source| SeccompError::Read { path: path.display().to_string(), source })?;
    convert(&text, go_arch(), &kernel_release())
        .map_err(|reason| SeccompError::Invalid { path: path.display().to_string(), reason })
}

/// Converts a moby-format profile for architecture `arch` (Go's name:
/// `amd64`, `arm64`...), kernel `release` and an empty capability set.
fn convert(profile: &str, arch: &str, release: &str) -> Result<LinuxSeccomp, String> {
    let profile: Profile = serde_json::from_str(profile).map_err(|e| e.to_string())?;
    let native = scmp_arch(arch).ok_or_else(|| format!("no seccomp architecture known for {arch}"))?;
    let architectures: Vec<String> = profile
        .arch_map
        .iter()
        .filter(|map| map.architecture == native)
        .flat_map(|map| std::iter::once(map.architecture.clone()).chain(map.sub_architectures.iter().cloned()))
        .collect();
    let syscalls: Vec<Value> = profile
        .syscalls
        .iter()
        .filter(|rule| {
            // No capabilities are granted: a rule for holders of some capability
            // never applies, a rule excluded for holders of one always does.
            (rule.includes.arches.is_empty() || rule.includes.arches.iter().any(|a| a == arch))
                && !rule.excludes.arches.iter().any(|a| a == arch)
                && rule.includes.caps.is_empty()
                && rule.includes.min_kernel.as_deref().is_none_or(|min| kernel_at_least(release, min))
        })
        .map(|rule| {
            let mut syscall = json!({ "names": rule.names, "action": rule.action });
            if let Some(errno) = rule.errno_ret {
                syscall["errnoRet"] = errno.into();
            }
            if let Some(args) = rule.args.as_ref().filter(|args| !args.is_empty()) {
                syscall["args"] = args.clone().into();
            }
            syscall
        })
        .collect();
    let mut seccomp = json!({
        "defaultAction": profile.default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(errno) = profile.default_errno_ret {
        seccomp["defaultErrnoRet"] = errno.into();
    }
    serde_json::from_value(seccomp).map_err(|e| e.to_string())
}

/// Go's name of this machine's architecture, as the profile's `arches` use it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn scmp_arch(go_arch: &str) -> Option<&'static str> {
    Some(match go_arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "arm64" => "SCMP_ARCH_AARCH64",
        "s390x" => "SCMP_ARCH_S390X",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => return None,
    })
}

fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// Whether kernel `release` (e.g. `6.1.0-18-amd64`) is at least `min` (e.g. `5.8`).
fn kernel_at_least(release: &str, min: &str) -> bool {
    let version = |text: &str| -> Vec<u32> {
        text.split(|c: char| !c.is_ascii_digit()).take(2).map(|part| part.parse().unwrap_or(0)).collect()
    };
    version(release) >= version(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["bdflush"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.1"}}
        ]
    }"#;

    fn names(seccomp: &LinuxSeccomp) -> Vec<String> {
        seccomp.syscalls().iter().flatten().flat_map(|s| s.names().clone()).collect()
    }

    #[test]
    fn keeps_only_this_architecture_and_no_capability_rules() {
        let seccomp = convert(PROFILE, "amd64", "6.1.0-18-amd64").unwrap();
        assert_eq!(names(&seccomp), ["read", "write", "arch_prctl", "clone", "bdflush"]);
        let architectures: Vec<String> =
            seccomp.architectures().iter().flatten().map(|a| serde_json::to_value(a).unwrap().as_str().unwrap().to_owned()).collect();
        assert_eq!(architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        assert_eq!(seccomp.default_errno_ret(), Some(38));
        let clone = &seccomp.syscalls().as_ref().unwrap()[3];
        assert_eq!(clone.args().as_ref().map(Vec::len), Some(1));
        assert_eq!(seccomp.syscalls().as_ref().unwrap()[4].errno_ret(), Some(1));
    }

    #[test]
    fn honours_the_minimum_kernel() {
        let seccomp = convert(PROFILE, "arm64", "7.2.0").unwrap();
        assert_eq!(names(&seccomp), ["read", "write", "arm_fadvise64_64", "clone", "bdflush", "newer"]);
    }

    #[test]
    fn the_installed_default_profile_converts() {
        let seccomp = load_profile(DEFAULT_SECCOMP_PROFILE).expect("run scripts/install-deps.sh");
        let allowed = names(&seccomp);
        for name in ["read", "execve", "clone", "exit_group"] {
            assert!(allowed.iter().any(|n| n == name), "{name} allowed");
        }
        assert!(!allowed.iter().any(|n| n == "mount"), "mount is for CAP_SYS_ADMIN only");
    }
}
