//! `echo-hash`: for every file under the input, writes `<relative path>.sha256`
//! into the output directory (same tree) holding `sha256sum`-style
//! `<hex digest>  <relative path>\n`, and reports arguments and environment on
//! stdout. Everything is sorted, so the output is a pure function of the
//! inputs, arguments and environment.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum EchoHashError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// One hashed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedFile {
    /// Path relative to the input root, `/`-separated; for a single-file input
    /// it is the file's name.
    pub relative_path: String,
    /// Lower-case hex SHA-256 of the content.
    pub sha256_hex: String,
}

/// Hashes every regular file under `input` (a directory, walked in sorted
/// order, or a single file) and writes one `.sha256` file per input file
/// under `output`. Returns the files in the order written.
pub fn hash_tree(input: &Path, output: &Path) -> Result<Vec<HashedFile>, EchoHashError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| EchoHashError::Read { path, source }
    };
    let metadata = fs::metadata(input).map_err(read_error(input))?;
    let mut files = Vec::new();
    if metadata.is_dir() {
        collect_files(input, String::new(), &mut files)?;
    } else {
        let name = input
            .file_name()
            .map_or_else(|| "input".to_owned(), |n| n.to_string_lossy().into_owned());
        files.push((input.to_owned(), name));
    }

    let mut hashed = Vec::with_capacity(files.len());
    for (path, relative_path) in files {
        let sha256_hex = sha256_file(&path).map_err(read_error(&path))?;
        let target = output.join(format!("{relative_path}.sha256"));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|source| EchoHashError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        fs::write(&target, format!("{sha256_hex}  {relative_path}\n")).map_err(|source| {
            EchoHashError::Write {
                path: target.clone(),
                source,
            }
        })?;
        hashed.push(HashedFile {
            relative_path,
            sha256_hex,
        });
    }
    Ok(hashed)
}

fn collect_files(
    dir: &Path,
    prefix: String,
    files: &mut Vec<(PathBuf, String)>,
) -> Result<(), EchoHashError> {
    let read_error = |source| EchoHashError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = fs::read_dir(dir)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    // read_dir order depends on the filesystem; sort for a deterministic walk.
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| EchoHashError::Read {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            collect_files(&path, relative, files)?;
        } else {
            files.push((path, relative));
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes the report printed on stdout: each argument, then each environment
/// variable in sorted order, then each hashed file.
pub fn write_report(
    out: &mut impl Write,
    args: &[String],
    env: &[(String, String)],
    files: &[HashedFile],
) -> io::Result<()> {
    for (index, arg) in args.iter().enumerate() {
        writeln!(out, "arg[{index}]={arg}")?;
    }
    let mut env = env.to_vec();
    env.sort();
    for (key, value) in env {
        writeln!(out, "env {key}={value}")?;
    }
    for file in files {
        writeln!(out, "{}  {}", file.sha256_hex, file.relative_path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_a_nested_tree_in_sorted_order() {
        let root = std::env::temp_dir().join(format!("echo-hash-test-{}", std::process::id()));
        let (input, output) = (root.join("in"), root.join("out"));
        fs::create_dir_all(input.join("sub")).unwrap();
        fs::write(input.join("b.txt"), "hello world\n").unwrap();
        fs::write(input.join("a.txt"), "").unwrap();
        fs::write(input.join("sub/c.bin"), [0u8, 1, 2]).unwrap();

        let hashed = hash_tree(&input, &output).unwrap();
        let paths: Vec<&str> = hashed.iter().map(|h| h.relative_path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "b.txt", "sub/c.bin"]);
        // Digests as printed by coreutils' sha256sum.
        assert_eq!(
            hashed[0].sha256_hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            fs::read_to_string(output.join("b.txt.sha256")).unwrap(),
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447  b.txt\n"
        );
        assert!(output.join("sub/c.bin.sha256").is_file());

        let single = hash_tree(&input.join("b.txt"), &root.join("single")).unwrap();
        assert_eq!(single[0].relative_path, "b.txt");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_input_is_a_read_error() {
        let error = hash_tree(Path::new("/definitely/not/here"), Path::new("/tmp")).unwrap_err();
        assert!(matches!(error, EchoHashError::Read { .. }));
    }

    #[test]
    fn report_sorts_the_environment() {
        let mut out = Vec::new();
        let env = [
            ("Z".to_owned(), "1".to_owned()),
            ("A".to_owned(), "2".to_owned()),
        ];
        let files = [HashedFile {
            relative_path: "x".to_owned(),
            sha256_hex: "00".to_owned(),
        }];
        write_report(
            &mut out,
            &["echo-hash".to_owned(), "-v".to_owned()],
            &env,
            &files,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "arg[0]=echo-hash\narg[1]=-v\nenv A=2\nenv Z=1\n00  x\n"
        );
    }
}
