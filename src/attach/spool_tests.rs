use std::io::Write;

use super::*;

fn part_with(dir: &Path, body: &[u8]) -> NamedTempFile {
    let mut part = tempfile::Builder::new()
        .prefix(".part-")
        .tempfile_in(dir)
        .unwrap();
    part.write_all(body).unwrap();
    part
}

#[test]
fn a_name_already_in_the_spool_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let first = persist_new(part_with(dir.path(), b"one"), dir.path(), "r.zip").unwrap();
    let second = persist_new(part_with(dir.path(), b"two"), dir.path(), "r.zip").unwrap();
    assert_ne!(first, second);
    assert_eq!(std::fs::read(&first).unwrap(), b"one");
    assert_eq!(std::fs::read(&second).unwrap(), b"two");
    assert!(second
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("r.zip"));
}

#[test]
fn the_first_download_removes_orphans_and_the_folder_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("state.db.spool");
    std::fs::create_dir(&spool_dir).unwrap();
    std::fs::write(spool_dir.join("left.zip"), b"old").unwrap();
    std::fs::write(spool_dir.join(".part-x1"), b"half").unwrap();
    let spool = Spool::open(&spool_dir).unwrap();
    assert_eq!(
        std::fs::read_dir(spool.dir()).unwrap().count(),
        2,
        "open leaves them"
    );
    spool.clear_leftovers();
    assert_eq!(std::fs::read_dir(spool.dir()).unwrap().count(), 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spool_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn the_folder_sits_beside_a_file_state() {
    let state = StateLocation::File(PathBuf::from("/var/lib/bot/state.db"));
    assert_eq!(
        Spool::folder_for(&state, None),
        PathBuf::from("/var/lib/bot/state.db.spool")
    );
    assert_eq!(
        Spool::folder_for(&state, Some(Path::new("/srv/spool"))),
        PathBuf::from("/srv/spool")
    );
}
