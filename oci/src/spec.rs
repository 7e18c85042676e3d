//! The runc bundle's `config.json` for one run: the sandbox contract written
//! as a runtime spec.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    get_default_mounts, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use shoal_runtime::Invocation;

use crate::error::ContainerError;
use crate::runtime::OciConfig;

/// The cgroup parent of every container, under each controller's root.
pub(crate) const CGROUP_PARENT: &str = "shoal-oci";

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD_MICROS: u64 = 100_000;

/// What one run needs besides the runtime's configuration.
pub(crate) struct RunSpec<'a> {
    pub(crate) id: &'a str,
    pub(crate) image: &'a ImageConfiguration,
    pub(crate) invocation: &'a Invocation,
    pub(crate) seccomp: &'a LinuxSeccomp,
    /// Whether the host accounts swap per cgroup, so memory+swap can be capped too.
    pub(crate) swap_accounting: bool,
}

/// Builds the spec. The root filesystem is `rootfs` in the bundle, mounted
/// read-only by runc after it has created the mountpoints.
pub(crate) fn build(config: &OciConfig, run: &RunSpec<'_>) -> Result<Spec, ContainerError> {
    let spec_error = |e: oci_spec::OciSpecError| ContainerError::host("building the container spec", e);
    let image = run.image.config().as_ref();
    let args = if run.invocation.args.is_empty() {
        let entrypoint = image.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
        let cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
        entrypoint.into_iter().chain(cmd).collect()
    } else {
        run.invocation.args.clone()
    };
    if args.is_empty() {
        return Err(ContainerError::InvalidProgram {
            reason: "no command: the invocation has no arguments and the image no entrypoint or cmd".to_owned(),
        });
    }
    // The image's environment, then the invocation's, which wins; nothing from the host.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for pair in image.and_then(|c| c.env().clone()).unwrap_or_else(|| vec![DEFAULT_PATH.to_owned()]) {
        let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        env.insert(key.to_owned(), value.to_owned());
    }
    env.extend(run.invocation.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let cwd = image
        .and_then(|c| c.working_dir().clone())
        .filter(|dir| dir.starts_with('/'))
        .unwrap_or_else(|| "/".to_owned());

    let no_capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(HashSet::new())
        .effective(HashSet::new())
        .inheritable(HashSet::new())
        .permitted(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(spec_error)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(config.uid)
                .gid(config.gid)
                .additional_gids(vec![config.gid])
                .build()
                .map_err(spec_error)?,
        )
        .capabilities(no_capabilities)
        // `runc spec`'s limit on open files, rather than the worker's own.
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(1024u64)
            .hard(1024u64)
            .build()
            .map_err(spec_error)?])
        .no_new_privileges(true)
        .build()
        .map_err(spec_error)?;

    // The defaults of `runc spec` (proc, a tmpfs /dev, devpts, shm, mqueue, a
    // read-only sysfs) without the cgroup filesystem, which a job has no use for.
    let mut mounts: Vec<Mount> =
        get_default_mounts().into_iter().filter(|m| m.destination() != &PathBuf::from("/sys/fs/cgroup")).collect();
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "mode=1777".to_owned(),
                format!("size={}", config.tmp_bytes),
            ])
            .build()
            .map_err(spec_error)?,
    );
    for mount in &run.invocation.mounts {
        mounts.push(
            MountBuilder::default()
                .destination(&mount.guest)
                .typ("bind")
                .source(&mount.host)
                .options(vec![
                    "rbind".to_owned(),
                    if mount.writable { "rw" } else { "ro" }.to_owned(),
                    "nosuid".to_owned(),
                    "nodev".to_owned(),
                ])
                .build()
                .map_err(spec_error)?,
        );
    }

    let mut memory = LinuxMemoryBuilder::default().limit(run.invocation.limits.memory_bytes as i64);
    if run.swap_accounting {
        // memory+swap equal to memory: the container gets no swap.
        memory = memory.swap(run.invocation.limits.memory_bytes as i64);
    }
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().map_err(spec_error)?])
        .memory(memory.build().map_err(spec_error)?)
        .pids(LinuxPidsBuilder::default().limit(config.pids_max).build().map_err(spec_error)?)
        .cpu(
            LinuxCpuBuilder::default()
                .period(CPU_PERIOD_MICROS)
                .quota((config.cpu_millis * CPU_PERIOD_MICROS / 1000) as i64)
                .build()
                .map_err(spec_error)?,
        )
        .build()
        .map_err(spec_error)?;
    let defaults = oci_spec::runtime::Linux::default();
    let linux = LinuxBuilder::default()
        .namespaces(defaults.namespaces().clone().unwrap_or_default())
        .masked_paths(defaults.masked_paths().clone().unwrap_or_default())
        .readonly_paths(defaults.readonly_paths().clone().unwrap_or_default())
        .resources(resources)
        .cgroups_path(PathBuf::from(format!("/{CGROUP_PARENT}/{}", run.id)))
        .seccomp(run.seccomp.clone())
        .build()
        .map_err(spec_error)?;

    let mut spec = Spec::default();
    spec.set_hostname(Some("shoal".to_owned()))
        .set_process(Some(process))
        .set_root(Some(RootBuilder::default().path("rootfs").readonly(true).build().map_err(spec_error)?))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux));
    Ok(spec)
}
