//! Images: import, load, list, inspect, remove.

use cove_model::{Error, Result};
use cove_runtime::ImageInfo;

use crate::Controller;

impl Controller {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(std::sync::Arc<dyn crate::seams::Runtime>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let rt = self.runtime.clone();
        tokio::task::spawn_blocking(move || f(rt))
            .await
            .map_err(|e| Error::internal(format!("image task failed: {e}")))?
    }

    /// Import a root filesystem tarball as `reference`.
    pub async fn image_import(&self, tar: Vec<u8>, reference: &str) -> Result<ImageInfo> {
        let r = reference.to_string();
        let info = self.blocking(move |rt| rt.import_image(tar, &r)).await?;
        self.image_event(&info.id, reference, "import");
        Ok(info)
    }

    /// Load a `docker save` archive.
    pub async fn image_load(&self, tar: Vec<u8>) -> Result<Vec<ImageInfo>> {
        let infos = self.blocking(move |rt| rt.load_images(tar)).await?;
        for i in &infos {
            self.image_event(&i.id, i.tags.first().map_or("", String::as_str), "load");
        }
        Ok(infos)
    }

    /// Every image.
    pub async fn image_list(&self) -> Result<Vec<ImageInfo>> {
        self.blocking(|rt| rt.list_images()).await
    }

    /// One image by reference.
    pub async fn image_get(&self, reference: &str) -> Result<ImageInfo> {
        self.runtime.find_image(reference)
    }

    /// Remove an image tag; refused (409) while a container uses it unless `force`.
    pub async fn image_remove(&self, reference: &str, force: bool) -> Result<ImageInfo> {
        let image = self.runtime.find_image(reference)?;
        if !force {
            let st = self.state.lock().await;
            if let Some(c) = st.containers.values().find(|c| c.config.image_id == image.id) {
                return Err(Error::conflict(format!(
                    "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                    cove_model::short_id(&c.id),
                    image.id.trim_start_matches("sha256:").get(..12).unwrap_or(&image.id)
                )));
            }
        }
        let info = self.runtime.remove_image(reference)?;
        self.image_event(&info.id, reference, "untag");
        Ok(info)
    }
}
