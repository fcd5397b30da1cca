//! An uncompressed initramfs: the cpio "newc" format the kernel unpacks
//! (Documentation/driver-api/early-userspace/buffer-format.rst).

use std::collections::BTreeSet;

const MAGIC: &str = "070701";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// An archive under construction. Parent directories are added before
/// their entries: the kernel's unpacker does not create them.
#[derive(Debug, Default)]
pub struct Cpio {
    buf: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory (and its parents), mode 0755.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.dirs.insert(path.to_owned());
        self.entry(path, S_IFDIR | 0o755, &[]);
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFREG | (perm & 0o7777), data);
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFLNK | 0o777, target.as_bytes());
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }

    fn parent_of(&mut self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        path.to_owned()
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.next_ino += 1;
        let size = u32::try_from(data.len()).expect("initramfs entry under 4 GiB");
        let name_size = u32::try_from(name.len() + 1).expect("short name");
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        // ino mode uid gid nlink mtime filesize devmajor devminor
        // rdevmajor rdevminor namesize check
        let fields = [
            self.next_ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            0,
            0,
            name_size,
            0,
        ];
        self.buf.extend_from_slice(MAGIC.as_bytes());
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cpio;

    #[test]
    fn file_entry_matches_golden_bytes() {
        let mut c = Cpio::new();
        c.file("/init", 0o755, b"hi\n");
        let bytes = c.finish();
        let golden = concat!(
            "070701", "00000001", // ino
            "000081ed", // regular file, 0755
            "00000000", "00000000", "00000001", // nlink
            "00000000", "00000003", // size
            "00000000", "00000000", "00000000", "00000000", "00000005", // "init" + NUL
            "00000000", "init\0", // 110 + 5 = 115: one byte of padding
            "\0", "hi\n\0", // data padded to 4
        );
        assert_eq!(&bytes[..golden.len()], golden.as_bytes());
        let trailer = &bytes[golden.len()..];
        assert_eq!(&trailer[..6], b"070701");
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn parents_come_first_and_once() {
        let mut c = Cpio::new();
        c.file("/lib/modules/a.ko", 0o644, b"");
        c.symlink("/lib/b", "a");
        let bytes = c.finish();
        let text = String::from_utf8_lossy(&bytes);
        let names: Vec<&str> = ["lib\0", "lib/modules\0", "lib/modules/a.ko\0", "lib/b\0"]
            .into_iter()
            .collect();
        let positions: Vec<usize> = names
            .iter()
            .map(|n| text.find(n).unwrap_or_else(|| panic!("{n:?} missing")))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert_eq!(text.matches("lib\0").count(), 1);
    }
}
