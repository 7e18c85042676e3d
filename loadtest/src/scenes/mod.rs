//! One job fanned out over a directory of many small real-format Landsat scenes
//! (`shoal-loadtest scenes`), on a stack of separate processes ([`crate::stack`]): a private
//! `redis-server`, a `shoal gateway` and K `shoal worker`s sharing one block store.
//!
//! The scenes are cut from the real scene in `data/landsat` ([`tiles`]): every band cropped to
//! the same small window, written as a uint16 GeoTIFF under the USGS name, beside the scene's
//! MTL. The directory of N scenes is added to the workers' block store (a HAMT-sharded UnixFS
//! directory past a few thousand entries), and one job with `fan_out` over it runs twice: cold,
//! then warm (same scenes, a spec differing in one environment variable, so a new job). Each run
//! is checked entry by entry through the content layer, and the warm run's tasks are counted
//! by whether the worker that ran them already held their scene ([`run`]).
//!
//! - [`options`]: what to run ([`ScenesOptions`], the subcommand's command line).
//! - [`tiles`]: the tile generator.
//! - [`run`]: the run itself (`ScenesOptions`' [`Mode`](crate::driver::Mode)).
//! - [`report`]: the [`ScenesReport`] and its JSON and Markdown forms.

pub mod options;
pub mod report;
pub mod run;
pub mod tiles;

pub use options::{default_source, ScenesOptions, ScenesProgram};
pub use report::{RunFigures, ScenesReport, TileCheck};
