//! The config drive: a small VFAT volume labelled `config-2` holding the
//! guest's metadata ([`crate::metadata`]) as files, attached to the guest
//! as a second, read-only disk, where cloud-init (its ConfigDrive source)
//! or any init script finds it by its label.
//!
//! VFAT, as Nova writes with `config_drive_format = vfat`, made with the
//! `fatfs` crate: no external tool, no mounting, and the drive is checked
//! back by the same crate in the tests.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// The label cloud-init looks for.
pub const LABEL: &str = "config-2";
/// The volume's size: Nova's for a VFAT drive (sparse on the host).
const SIZE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("writing the config drive {0}: {1}")]
    Io(String, std::io::Error),
    #[error("config drive file {0:?} is not a relative path of plain names")]
    BadPath(String),
}

/// Writes the drive to `path` (through a temporary file renamed into
/// place, so that a drive is whole or absent): every `(path, bytes)` of
/// `files`, directories made as needed.
pub fn write(path: &Path, files: &[(String, Vec<u8>)]) -> Result<(), ConfigDriveError> {
    let io = |e: std::io::Error| ConfigDriveError::Io(path.display().to_string(), e);
    let temp = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io)?;
    file.set_len(SIZE).map_err(io)?;
    let mut label = [b' '; 11];
    label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    fatfs::format_volume(
        &mut file,
        fatfs::FormatVolumeOptions::new().volume_label(label),
    )
    .map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    {
        let fs = fatfs::FileSystem::new(&mut file, fatfs::FsOptions::new()).map_err(io)?;
        for (name, bytes) in files {
            let parts: Vec<&str> = name.split('/').collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
            {
                return Err(ConfigDriveError::BadPath(name.clone()));
            }
            let (file_name, dirs) = parts.split_last().expect("split gives one part");
            let mut dir = fs.root_dir();
            for d in dirs {
                dir = match dir.open_dir(d) {
                    Ok(existing) => existing,
                    Err(_) => dir.create_dir(d).map_err(io)?,
                };
            }
            let mut f = dir.create_file(file_name).map_err(io)?;
            f.truncate().map_err(io)?;
            f.write_all(bytes).map_err(io)?;
            f.flush().map_err(io)?;
        }
        fs.unmount().map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_back(path: &Path, name: &str) -> Vec<u8> {
        let file = std::fs::File::open(path).unwrap();
        let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
        let mut out = Vec::new();
        fs.root_dir()
            .open_file(name)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_drive_holds_the_files_under_its_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.config");
        let files = vec![
            (
                "openstack/latest/meta_data.json".to_string(),
                b"{\"uuid\": \"u\"}".to_vec(),
            ),
            ("openstack/latest/user_data".to_string(), vec![7u8; 70_000]),
            ("ec2/latest/meta-data.json".to_string(), b"{}".to_vec()),
        ];
        write(&path, &files).unwrap();
        for (name, bytes) in &files {
            assert_eq!(&read_back(&path, name), bytes, "{name}");
        }
        let fs =
            fatfs::FileSystem::new(std::fs::File::open(&path).unwrap(), fatfs::FsOptions::new())
                .unwrap();
        assert_eq!(fs.volume_label().trim_end(), LABEL);
        assert!(!path.with_extension("partial").exists());
        // blkid (util-linux, which set-up installs), which cloud-init
        // asks, reads the same label.
        let out = std::process::Command::new("blkid")
            .args(["-o", "value", "-s", "LABEL"])
            .arg(&path)
            .output()
            .expect("blkid runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), LABEL);
    }

    #[test]
    fn paths_that_climb_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.config");
        for bad in ["../x", "a//b", "/abs", "a/./b"] {
            assert!(matches!(
                write(&path, &[(bad.to_string(), vec![])]),
                Err(ConfigDriveError::BadPath(_))
            ));
        }
    }
}
