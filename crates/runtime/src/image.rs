//! The image store: root filesystems under `data_root/images/<hex>/rootfs`, their metadata
//! in `<hex>/image.json`, and the tags in `repositories.json` (`{"name:tag": "sha256:.."}`).
//!
//! An imported tarball's id is the sha256 of its (decompressed) tar bytes; a loaded
//! `docker save` image's id is the sha256 of its config JSON, as in Docker.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cove_model::Error;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::extract::{decompressed, extract_tar};
use crate::fsutil::{atomic_write, open_in_root, tree_size, unique_name};
use crate::reference::{is_hex_prefix, normalize};
use crate::{timefmt, ImageInfo, Runtime};

const ID_PREFIX: &str = "sha256:";

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A directory removed when dropped (unless it was renamed away first).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The parts of an image config JSON we use.
#[derive(Debug, Default, Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ContainerConfigFile>,
}

#[derive(Debug, Default, Deserialize)]
struct ContainerConfigFile {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "ExposedPorts", default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// How a reference matched an image.
enum Matched {
    Tag(String),
    Id,
}

impl Runtime {
    fn repositories_path(&self) -> PathBuf {
        self.images_dir().join("repositories.json")
    }

    fn image_dir(&self, hex: &str) -> PathBuf {
        self.images_dir().join(hex)
    }

    /// The root filesystem of image `id` (`sha256:<hex>` or bare hex).
    pub(crate) fn image_rootfs(&self, id: &str) -> Result<PathBuf, Error> {
        let hex = id.strip_prefix(ID_PREFIX).unwrap_or(id);
        if hex.len() != 64 || !is_hex_prefix(hex) {
            return Err(Error::not_found(format!("No such image: {id}")));
        }
        let p = self.image_dir(hex).join("rootfs");
        if !p.is_dir() {
            return Err(Error::not_found(format!("No such image: {id}")));
        }
        Ok(p)
    }

    fn new_tmp_dir(&self) -> Result<TempDir, Error> {
        let tmp = self.images_dir().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| io_err("create image tmp dir", e))?;
        let dir = tmp.join(unique_name("w-"));
        std::fs::create_dir(&dir).map_err(|e| io_err("create image tmp dir", e))?;
        Ok(TempDir(dir))
    }

    fn lock_images(&self) -> std::sync::MutexGuard<'_, ()> {
        self.image_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_repositories(&self) -> Result<BTreeMap<String, String>, Error> {
        match std::fs::read(self.repositories_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| io_err("read repositories.json", e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err("read repositories.json", e)),
        }
    }

    fn write_repositories(&self, repos: &BTreeMap<String, String>) -> Result<(), Error> {
        let data =
            serde_json::to_vec_pretty(repos).map_err(|e| io_err("write repositories.json", e))?;
        atomic_write(&self.repositories_path(), &data)
            .map_err(|e| io_err("write repositories.json", e))
    }

    fn read_meta(&self, hex: &str) -> Option<ImageInfo> {
        let b = std::fs::read(self.image_dir(hex).join("image.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn with_tags(mut info: ImageInfo, repos: &BTreeMap<String, String>) -> ImageInfo {
        info.tags =
            repos.iter().filter(|(_, id)| **id == info.id).map(|(t, _)| t.clone()).collect();
        info
    }

    /// Move a prepared image directory (holding `rootfs/`) into place, unless an image with
    /// the same id exists already.
    fn commit_image(&self, work: &Path, info: &ImageInfo) -> Result<(), Error> {
        let hex = &info.id[ID_PREFIX.len()..];
        let target = self.image_dir(hex);
        if target.exists() {
            return Ok(());
        }
        let mut meta = info.clone();
        meta.tags.clear();
        let data = serde_json::to_vec_pretty(&meta).map_err(|e| io_err("write image.json", e))?;
        atomic_write(&work.join("image.json"), &data).map_err(|e| io_err("write image.json", e))?;
        std::fs::rename(work, &target).map_err(|e| io_err("store image", e))
    }

    /// Point `tag` at `id` (moving it from any other image).
    fn set_tag(&self, tag: &str, id: &str) -> Result<(), Error> {
        let mut repos = self.read_repositories()?;
        repos.insert(tag.to_string(), id.to_string());
        self.write_repositories(&repos)
    }

    /// Import a root filesystem tarball (plain or gzip) as image `reference` (e.g.
    /// `busybox` -> `busybox:latest`). Extraction is safe: absolute paths and `..` escapes
    /// are refused, symlinks are kept as symlinks and never followed, modes are preserved.
    /// Re-importing the same reference moves the tag to the new image.
    pub fn import_image(&self, reader: impl Read, reference: &str) -> Result<ImageInfo, Error> {
        let tag = normalize(reference)?;
        let work = self.new_tmp_dir()?;
        let rootfs = work.0.join("rootfs");
        std::fs::create_dir(&rootfs).map_err(|e| io_err("create rootfs", e))?;
        set_mode(&rootfs, 0o755)?;
        let mut hashing = HashingReader { inner: decompressed(reader)?, hasher: Sha256::new() };
        extract_tar(&mut hashing, &rootfs, true)?;
        io::copy(&mut hashing, &mut io::sink())
            .map_err(|e| Error::invalid(format!("invalid tar archive: {e}")))?;
        let id = format!("{ID_PREFIX}{}", hex(&hashing.hasher.finalize()));
        let info = ImageInfo {
            id: id.clone(),
            created: timefmt::now(),
            size: tree_size(&rootfs),
            ..ImageInfo::default()
        };
        let _lock = self.lock_images();
        self.commit_image(&work.0, &info)?;
        self.set_tag(&tag, &id)?;
        let repos = self.read_repositories()?;
        let meta = self.read_meta(&id[ID_PREFIX.len()..]).unwrap_or(info);
        Ok(Self::with_tags(meta, &repos))
    }

    /// Load a `docker save` archive (plain or gzip): `manifest.json` names each image's
    /// config JSON, tags and layers; layers (plain or gzip tars) are applied in order with OCI
    /// whiteouts. Returns the loaded images.
    pub fn load_images(&self, reader: impl Read) -> Result<Vec<ImageInfo>, Error> {
        let work = self.new_tmp_dir()?;
        let archive = work.0.join("archive");
        std::fs::create_dir(&archive).map_err(|e| io_err("create tmp dir", e))?;
        extract_tar(decompressed(reader)?, &archive, false)?;
        let manifest: Vec<ManifestEntry> = {
            let f = open_in_root(&archive, "manifest.json").map_err(|_| {
                Error::invalid("invalid docker save archive: manifest.json not found")
            })?;
            serde_json::from_reader(io::BufReader::new(f)).map_err(|e| {
                Error::invalid(format!("invalid docker save archive: manifest.json: {e}"))
            })?
        };
        if manifest.is_empty() {
            return Err(Error::invalid(
                "invalid docker save archive: manifest.json lists no image",
            ));
        }
        // Validate every tag before changing anything.
        let mut tags_per_image = Vec::new();
        for m in &manifest {
            let tags = m.repo_tags.clone().unwrap_or_default();
            tags_per_image.push(tags.iter().map(|t| normalize(t)).collect::<Result<Vec<_>, _>>()?);
        }
        let mut loaded = Vec::new();
        for (i, (m, tags)) in manifest.iter().zip(tags_per_image).enumerate() {
            let mut config = Vec::new();
            open_in_root(&archive, &m.config)
                .and_then(|mut f| f.read_to_end(&mut config))
                .map_err(|e| {
                    Error::invalid(format!("invalid docker save archive: {}: {e}", m.config))
                })?;
            let cfg: ImageConfigFile = serde_json::from_slice(&config)
                .map_err(|e| Error::invalid(format!("invalid image config {}: {e}", m.config)))?;
            let id = format!("{ID_PREFIX}{}", hex(&Sha256::digest(&config)));
            let hexid = id[ID_PREFIX.len()..].to_string();
            if !self.image_dir(&hexid).exists() {
                let iw = work.0.join(format!("image-{i}"));
                let rootfs = iw.join("rootfs");
                std::fs::create_dir_all(&rootfs).map_err(|e| io_err("create rootfs", e))?;
                set_mode(&rootfs, 0o755)?;
                for layer in &m.layers {
                    let f = open_in_root(&archive, layer).map_err(|e| {
                        Error::invalid(format!("invalid docker save archive: layer {layer}: {e}"))
                    })?;
                    extract_tar(decompressed(io::BufReader::new(f))?, &rootfs, true)
                        .map_err(|e| e.context(format!("layer {layer}")))?;
                }
                let c = cfg.config.unwrap_or_default();
                let info = ImageInfo {
                    id: id.clone(),
                    tags: Vec::new(),
                    created: cfg.created.unwrap_or_else(timefmt::now),
                    size: tree_size(&rootfs),
                    entrypoint: c.entrypoint.unwrap_or_default(),
                    cmd: c.cmd.unwrap_or_default(),
                    env: c.env.unwrap_or_default(),
                    working_dir: c.working_dir.unwrap_or_default(),
                    exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
                };
                let _lock = self.lock_images();
                self.commit_image(&iw, &info)?;
            }
            let _lock = self.lock_images();
            for tag in &tags {
                self.set_tag(tag, &id)?;
            }
            loaded.push(hexid);
        }
        let repos = self.read_repositories()?;
        loaded
            .iter()
            .map(|h| {
                self.read_meta(h).map(|m| Self::with_tags(m, &repos)).ok_or_else(|| {
                    Error::internal(format!("image sha256:{h} vanished while loading"))
                })
            })
            .collect()
    }

    /// All images, newest first.
    pub fn list_images(&self) -> Result<Vec<ImageInfo>, Error> {
        let repos = self.read_repositories()?;
        let mut out: Vec<ImageInfo> = self
            .image_hexes()?
            .iter()
            .filter_map(|h| self.read_meta(h))
            .map(|m| Self::with_tags(m, &repos))
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn image_hexes(&self) -> Result<Vec<String>, Error> {
        let rd = std::fs::read_dir(self.images_dir()).map_err(|e| io_err("list images", e))?;
        Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.len() == 64 && is_hex_prefix(n))
            .collect())
    }

    fn resolve(&self, reference: &str) -> Result<(ImageInfo, Matched), Error> {
        let repos = self.read_repositories()?;
        let normalized = normalize(reference).ok();
        let not_found = || {
            Error::not_found(format!(
                "No such image: {}",
                normalized.as_deref().unwrap_or(reference)
            ))
        };
        let by_prefix = |prefix: &str| -> Result<Option<ImageInfo>, Error> {
            let matches: Vec<String> =
                self.image_hexes()?.into_iter().filter(|h| h.starts_with(prefix)).collect();
            match matches.as_slice() {
                [] => Ok(None),
                [one] => Ok(self.read_meta(one).map(|m| Self::with_tags(m, &repos))),
                _ => Err(Error::invalid(format!("image id prefix {prefix:?} is ambiguous"))),
            }
        };
        if let Some(hex) = reference.strip_prefix(ID_PREFIX) {
            if !is_hex_prefix(hex) {
                return Err(not_found());
            }
            return by_prefix(hex)?.map(|i| (i, Matched::Id)).ok_or_else(not_found);
        }
        if let Some(tag) = &normalized {
            if let Some(id) = repos.get(tag) {
                if let Some(meta) = self.read_meta(id.strip_prefix(ID_PREFIX).unwrap_or(id)) {
                    return Ok((Self::with_tags(meta, &repos), Matched::Tag(tag.clone())));
                }
            }
        }
        if is_hex_prefix(reference) {
            if let Some(i) = by_prefix(reference)? {
                return Ok((i, Matched::Id));
            }
        }
        Err(not_found())
    }

    /// Find an image by `name[:tag]`, full id `sha256:<hex>`, bare hex id, or a unique id
    /// prefix. Not found: "No such image: <ref>".
    pub fn find_image(&self, reference: &str) -> Result<ImageInfo, Error> {
        self.resolve(reference).map(|(i, _)| i)
    }

    /// Remove a tag, and the image when no tag is left. Given an id, remove the image and all
    /// its tags. Returns the image as it was, with `tags` = the tags this call removed; the
    /// image itself is gone unless other tags still point at it. (Refusing to remove an image
    /// in use is the caller's job.)
    pub fn remove_image(&self, reference: &str) -> Result<ImageInfo, Error> {
        let _lock = self.lock_images();
        let (mut info, matched) = self.resolve(reference)?;
        let mut repos = self.read_repositories()?;
        let removed: Vec<String> = match matched {
            Matched::Tag(t) => vec![t],
            Matched::Id => info.tags.clone(),
        };
        for t in &removed {
            repos.remove(t);
        }
        self.write_repositories(&repos)?;
        if !repos.values().any(|id| *id == info.id) {
            let hexid = &info.id[ID_PREFIX.len()..];
            let tmp = self.new_tmp_dir()?;
            let grave = tmp.0.join("img");
            std::fs::rename(self.image_dir(hexid), &grave)
                .map_err(|e| io_err("remove image", e))?;
            drop(tmp);
        }
        info.tags = removed;
        Ok(info)
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(format!("chmod {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::tests::TarBuilder;
    use cove_model::ErrorKind;

    fn rt() -> (tempfile::TempDir, Runtime) {
        let d = tempfile::tempdir().unwrap();
        let rt = Runtime::new(&d.path().join("data"), &d.path().join("run")).unwrap();
        (d, rt)
    }

    fn rootfs_tar(marker: &str) -> Vec<u8> {
        TarBuilder::new()
            .dir("bin", 0o755)
            .file("bin/busybox", 0o755, b"0123456789")
            .symlink("bin/sh", "busybox")
            .file("marker", 0o644, marker.as_bytes())
            .build()
    }

    #[test]
    fn import_tags_and_finds() {
        let (_d, rt) = rt();
        let tar = rootfs_tar("one");
        let info = rt.import_image(&tar[..], "busybox").unwrap();
        let expected = format!("sha256:{}", hex(&Sha256::digest(&tar)));
        assert_eq!(info.id, expected);
        assert_eq!(info.tags, vec!["busybox:latest"]);
        assert_eq!(info.size, 13);
        assert!(!info.created.is_empty());
        let hexid = &info.id[7..];
        for r in [
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox",
            &info.id,
            hexid,
            &hexid[..1],
            &hexid[..12],
        ] {
            assert_eq!(rt.find_image(r).unwrap().id, info.id, "{r}");
        }
        assert!(rt.image_rootfs(&info.id).unwrap().join("marker").exists());
        let e = rt.find_image("nope").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "No such image: nope:latest");
        assert_eq!(
            rt.find_image("busybox:other").unwrap_err().message,
            "No such image: busybox:other"
        );
        // A hex-looking id that matches nothing.
        assert_eq!(rt.find_image("sha256:ffff").unwrap_err().kind, ErrorKind::NotFound);
        assert!(rt.import_image(&tar[..], "Bad").is_err());
    }

    #[test]
    fn gzip_import_has_the_same_id() {
        use std::io::Write;
        let (_d, rt) = rt();
        let tar = rootfs_tar("one");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let a = rt.import_image(&tar[..], "a").unwrap();
        let b = rt.import_image(&gz.finish().unwrap()[..], "b").unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(b.tags, vec!["a:latest", "b:latest"]);
        assert_eq!(rt.list_images().unwrap().len(), 1);
    }

    #[test]
    fn reimport_moves_the_tag_and_remove() {
        let (_d, rt) = rt();
        let one = rt.import_image(&rootfs_tar("one")[..], "img").unwrap();
        let two = rt.import_image(&rootfs_tar("two")[..], "img").unwrap();
        assert_ne!(one.id, two.id);
        assert_eq!(rt.find_image("img").unwrap().id, two.id);
        assert!(rt.find_image(&one.id).unwrap().tags.is_empty());
        assert_eq!(rt.list_images().unwrap().len(), 2);
        // Remove by tag: the image goes with its last tag.
        rt.import_image(&rootfs_tar("two")[..], "other:v1").unwrap();
        let r = rt.remove_image("img").unwrap();
        assert_eq!(r.tags, vec!["img:latest"]);
        assert!(rt.find_image(&two.id).is_ok(), "still tagged other:v1");
        rt.remove_image("other:v1").unwrap();
        assert_eq!(rt.find_image(&two.id).unwrap_err().kind, ErrorKind::NotFound);
        // Remove by id.
        let r = rt.remove_image(&one.id[7..15]).unwrap();
        assert_eq!(r.id, one.id);
        assert!(rt.list_images().unwrap().is_empty());
        assert_eq!(rt.remove_image("img").unwrap_err().kind, ErrorKind::NotFound);
    }

    #[test]
    fn ambiguous_prefix() {
        let (_d, rt) = rt();
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(
                rt.import_image(&rootfs_tar(&i.to_string())[..], &format!("i{i}")).unwrap().id,
            );
        }
        // 40 ids over 16 first digits: some first digit is shared.
        let first = ids
            .iter()
            .map(|i| &i[7..8])
            .find(|c| ids.iter().filter(|j| &j[7..8] == *c).count() > 1)
            .unwrap();
        assert_eq!(rt.find_image(first).unwrap_err().kind, ErrorKind::InvalidInput);
    }

    fn docker_save_archive(gzip_layers: bool) -> Vec<u8> {
        use std::io::Write;
        let layer1 = TarBuilder::new()
            .file("bin/busybox", 0o755, b"bb")
            .file("etc/old", 0o644, b"old")
            .file("var/cache/a", 0o644, b"a")
            .build();
        let mut layer2 = TarBuilder::new()
            .file("etc/.wh.old", 0o644, b"")
            .file("var/cache/.wh..wh..opq", 0o644, b"")
            .file("var/cache/b", 0o644, b"b")
            .build();
        if gzip_layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&layer2).unwrap();
            layer2 = gz.finish().unwrap();
        }
        let config = serde_json::json!({
            "created": "2024-01-02T03:04:05.5Z",
            "config": {
                "Entrypoint": ["/bin/busybox"],
                "Cmd": ["sh"],
                "Env": ["PATH=/bin", "A=b"],
                "WorkingDir": "/srv",
                "ExposedPorts": {"80/tcp": {}, "53/udp": {}}
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        })
        .to_string();
        let manifest = serde_json::json!([{
            "Config": "blobs/sha256/cfg",
            "RepoTags": ["app:v1", "docker.io/library/app:latest"],
            "Layers": ["l1/layer.tar", "blobs/sha256/l2"]
        }])
        .to_string();
        TarBuilder::new()
            .file("blobs/sha256/cfg", 0o644, config.as_bytes())
            .file("l1/layer.tar", 0o644, &layer1)
            .file("blobs/sha256/l2", 0o644, &layer2)
            .file("manifest.json", 0o644, manifest.as_bytes())
            .build()
    }

    #[test]
    fn load_docker_save() {
        for gzip in [false, true] {
            let (_d, rt) = rt();
            let imgs = rt.load_images(&docker_save_archive(gzip)[..]).unwrap();
            assert_eq!(imgs.len(), 1);
            let i = &imgs[0];
            assert_eq!(i.tags, vec!["app:latest", "app:v1"]);
            assert_eq!(i.entrypoint, vec!["/bin/busybox"]);
            assert_eq!(i.cmd, vec!["sh"]);
            assert_eq!(i.env, vec!["PATH=/bin", "A=b"]);
            assert_eq!(i.working_dir, "/srv");
            assert_eq!(i.exposed_ports, vec!["53/udp", "80/tcp"]);
            assert_eq!(i.created, "2024-01-02T03:04:05.5Z");
            let root = rt.image_rootfs(&i.id).unwrap();
            assert!(root.join("bin/busybox").exists());
            assert!(!root.join("etc/old").exists());
            assert!(!root.join("var/cache/a").exists());
            assert!(root.join("var/cache/b").exists());
            // Loading again is idempotent.
            let again = rt.load_images(&docker_save_archive(gzip)[..]).unwrap();
            assert_eq!(again[0].id, i.id);
            assert!(!rt.images_dir().join("tmp").read_dir().unwrap().any(|_| true));
        }
    }

    #[test]
    fn load_rejects_bad_archives() {
        let (_d, rt) = rt();
        let no_manifest = TarBuilder::new().file("x", 0o644, b"x").build();
        let e = rt.load_images(&no_manifest[..]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.contains("manifest.json"), "{}", e.message);
        // A manifest pointing a layer outside the archive through a symlink.
        let manifest = r#"[{"Config":"cfg","RepoTags":["x"],"Layers":["evil"]}]"#;
        let outside = tempfile::NamedTempFile::new().unwrap();
        let tar = TarBuilder::new()
            .file("cfg", 0o644, b"{}")
            .symlink("evil", outside.path().to_str().unwrap())
            .file("manifest.json", 0o644, manifest.as_bytes())
            .build();
        assert_eq!(rt.load_images(&tar[..]).unwrap_err().kind, ErrorKind::InvalidInput);
        assert!(rt.list_images().unwrap().is_empty());
    }
}
