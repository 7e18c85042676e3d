//! Shoal's container runtime: user-provided OCI images run isolated by runc,
//! under the same contract as the WebAssembly runtime (`shoal-runtime`),
//! whose [`Invocation`](shoal_runtime::Invocation),
//! [`Outcome`](shoal_runtime::Outcome) and
//! [`FailureKind`](shoal_runtime::FailureKind) it reuses.
//!
//! 1. [`Image::open`] reads an OCI image layout (`oci-layout`, `index.json`,
//!    `blobs/sha256/…`) and verifies the manifest and config against their
//!    digests and sizes.
//! 2. [`OciRuntime::prepare`] unpacks the layers into the [`LayerCache`]
//!    (keyed by digest, each blob verified as it is unpacked, entries that
//!    could escape the root refused), or finds them there.
//! 3. [`OciRuntime::run`] runs the image once with `runc run`:
//!    * the root filesystem is read-only (an overlay of the cached layers);
//!      inputs are bind-mounted read-only, writable mounts (`/outputs`) are
//!      the only writable places besides a size-limited `/tmp` tmpfs (and
//!      runc's usual `/dev/shm`);
//!    * own network namespace (loopback only), pid, ipc, uts, mount and
//!      cgroup namespaces;
//!    * an unprivileged uid/gid (65534), no capabilities, no-new-privileges,
//!      the containers-common default seccomp profile, hardened against
//!      namespaces and mounts;
//!    * cgroup limits on memory (no swap), processes and CPU;
//!    * the wall-clock limit kills the whole container; stdout and stderr
//!      are captured up to their caps; output size and entry count are
//!      polled during the run (the container is killed when over) and
//!      checked after it.
//!
//! After every run, whatever its end, no container, mount, cgroup or process
//! is left. A container dies with the process that ran it, even one killed
//! with SIGKILL (a watchdog process deletes it); [`OciRuntime::cleanup_stale`]
//! removes the rest of what a killed process left.

mod error;
mod image;
mod runtime;
mod seccomp;
mod spec;
mod unpack;

pub use error::{ContainerError, ImageError};
pub use image::{BlobDigest, Compression, Image, Layer};
pub use runtime::{OciConfig, OciRuntime};
pub use seccomp::{load_profile, SeccompError, DEFAULT_SECCOMP_PROFILE};
pub use unpack::{LayerCache, UnpackedImage};
