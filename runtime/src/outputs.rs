//! Size accounting of the writable mounts, for
//! [`Limits::output_bytes`](crate::Limits::output_bytes).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Total size in bytes of the regular files under `roots`, recursively.
///
/// Symbolic links are counted by their own size and never followed, so a
/// guest cannot make the walk leave its mounts or loop. Sizes are apparent
/// sizes (what would be published), so a sparse file counts in full.
pub(crate) fn total_size<'a>(roots: impl IntoIterator<Item = &'a Path>) -> io::Result<u64> {
    let mut pending: Vec<PathBuf> = roots.into_iter().map(Path::to_path_buf).collect();
    let mut total = 0u64;
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(metadata.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_files_in_nested_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), [0u8; 10]).expect("write a");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("sub/b"), [0u8; 32]).expect("write b");
        assert_eq!(total_size([dir.path()]).expect("walk"), 42);
    }

    #[test]
    fn does_not_follow_symlinks_out_of_the_mount() {
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("big"), vec![0u8; 4096]).expect("write big");
        let mount = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), mount.path().join("link")).expect("symlink");
        let counted = total_size([mount.path()]).expect("walk");
        let link_size = fs::symlink_metadata(mount.path().join("link")).expect("lstat").len();
        assert_eq!(counted, link_size);
    }
}
