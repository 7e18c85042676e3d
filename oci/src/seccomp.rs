//! The containers' seccomp filter, converted from the default profile that
//! Debian's `golang-github-containers-common` ships in Docker/moby format
//! into the runtime spec's `linux.seccomp`, the way Docker and Podman apply
//! it: entries for other architectures dropped, and entries conditional on
//! capabilities kept or dropped for the sandbox's empty capability set.
//!
//! containers-common's profile (unlike Docker's) lets anyone create
//! namespaces and mount, because Podman runs rootless containers inside
//! user namespaces. A job needs neither, and a user namespace would hand it
//! capabilities over new namespaces (mounts, network) and the kernel code
//! behind them, so [`harden`] takes them back as Docker's profile does for a
//! process without `CAP_SYS_ADMIN`.

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
    #[error(
        "cannot read the seccomp profile {path} (install golang-github-containers-common: scripts/install-deps.sh)"
    )]
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
    let syscalls = harden(syscalls);
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

/// Calls that create or enter namespaces or change mounts, refused with EPERM.
const NAMESPACE_AND_MOUNT_CALLS: [&str; 13] = [
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
];
/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Removes the namespace and mount calls (and unconditional `clone`,
/// `clone3`) from the allowing rules, then adds: those calls fail with EPERM,
/// `clone` is allowed without namespace flags, and `clone3` (whose flags
/// live in memory a filter cannot read) fails with ENOSYS so that libc falls
/// back to `clone`.
fn harden(mut syscalls: Vec<Value>) -> Vec<Value> {
    for rule in &mut syscalls {
        if rule["action"] != "SCMP_ACT_ALLOW" {
            continue;
        }
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|name| {
                let name = name.as_str().unwrap_or_default();
                !NAMESPACE_AND_MOUNT_CALLS.contains(&name) && name != "clone" && name != "clone3"
            });
        }
    }
    syscalls.retain(|rule| rule["names"].as_array().is_none_or(|names| !names.is_empty()));
    syscalls.push(json!({ "names": NAMESPACE_AND_MOUNT_CALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM }));
    syscalls.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }],
    }));
    syscalls.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    syscalls
}

/// Go's name of this machine's architecture, as the profile's `arches` use it.
pub(crate) fn go_arch() -> &'static str {
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
        let names = names(&seccomp);
        assert_eq!(names[..4], ["read", "write", "arch_prctl", "bdflush"]);
        let architectures: Vec<String> = seccomp
            .architectures()
            .iter()
            .flatten()
            .map(|a| serde_json::to_value(a).unwrap().as_str().unwrap().to_owned())
            .collect();
        assert_eq!(architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        assert_eq!(seccomp.default_errno_ret(), Some(38));
        assert_eq!(seccomp.syscalls().as_ref().unwrap()[3].errno_ret(), Some(1));
    }

    #[test]
    fn honours_the_minimum_kernel() {
        let seccomp = convert(PROFILE, "arm64", "7.2.0").unwrap();
        assert_eq!(names(&seccomp)[..5], ["read", "write", "arm_fadvise64_64", "bdflush", "newer"]);
    }

    #[test]
    fn the_installed_default_profile_converts() {
        let seccomp = load_profile(DEFAULT_SECCOMP_PROFILE).expect("run scripts/install-deps.sh");
        let allowed = names(&seccomp);
        for name in ["read", "execve", "clone", "exit_group"] {
            assert!(allowed.iter().any(|n| n == name), "{name} allowed");
        }
        let allowing: Vec<_> = seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| serde_json::to_value(rule.action()).unwrap() == "SCMP_ACT_ALLOW")
            .collect();
        for name in ["mount", "unshare", "setns", "clone3"] {
            assert!(!allowing.iter().any(|rule| rule.names().iter().any(|n| n == name)), "{name} not allowed");
        }
        let clone: Vec<_> = allowing.iter().filter(|rule| rule.names().iter().any(|n| n == "clone")).collect();
        assert_eq!(clone.len(), 1, "clone allowed once, without namespace flags");
        assert_eq!(clone[0].args().as_ref().map(Vec::len), Some(1));
    }
}
