//! Frames as analytics plugins see them: the pixels stay on the host until the
//! plugin asks for them, and come already scaled and converted.

use crate::wit::{frames, types};

/// Pixel layouts the host hands out ([`Frame::pixels`]).
///
/// ```
/// use vigil_plugin_sdk::{Image, PixelFormat};
/// let grey = Image { width: 4, height: 2, format: PixelFormat::Gray8, data: vec![0; 8] };
/// let rgb = Image { width: 4, height: 2, format: PixelFormat::Rgb8, data: vec![0; 24] };
/// assert_eq!((grey.bytes_per_pixel(), rgb.bytes_per_pixel()), (1, 3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// One byte of luma per pixel: the decoder's Y plane as is (video range,
    /// about 16 for black to 235 for white). The cheapest; enough for motion and
    /// brightness.
    Gray8,
    /// Three bytes (red, green, blue) per pixel, converted on the host from the
    /// decoded picture (BT.601, video range in, full range 0–255 out).
    Rgb8,
}

/// Pixels of a frame: rows top to bottom, `width × bytes-per-pixel` bytes each,
/// no padding.
///
/// ```
/// use vigil_plugin_sdk::{Image, PixelFormat};
/// let img = Image { width: 2, height: 1, format: PixelFormat::Gray8, data: vec![10, 20] };
/// assert_eq!(img.pixel(1, 0), &[20]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Width in pixels (after scaling).
    pub width: u32,
    /// Height in pixels (after scaling).
    pub height: u32,
    /// The layout of [`Image::data`].
    pub format: PixelFormat,
    /// `height` rows of `width × bytes_per_pixel()` bytes.
    pub data: Vec<u8>,
}

impl Image {
    /// Bytes per pixel of the format: 1 for [`PixelFormat::Gray8`], 3 for
    /// [`PixelFormat::Rgb8`].
    ///
    /// ```
    /// use vigil_plugin_sdk::{Image, PixelFormat};
    /// let img = Image { width: 1, height: 1, format: PixelFormat::Rgb8, data: vec![1, 2, 3] };
    /// assert_eq!(img.bytes_per_pixel(), 3);
    /// ```
    pub fn bytes_per_pixel(&self) -> usize {
        match self.format {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb8 => 3,
        }
    }

    /// The bytes of the pixel at column `x`, row `y` (one for grey, three for
    /// RGB).
    ///
    /// # Panics
    ///
    /// When `(x, y)` is outside the image.
    ///
    /// ```
    /// use vigil_plugin_sdk::{Image, PixelFormat};
    /// let img = Image { width: 2, height: 1, format: PixelFormat::Rgb8, data: vec![255, 0, 0, 0, 0, 255] };
    /// assert_eq!(img.pixel(0, 0), &[255, 0, 0]); // red
    /// assert_eq!(img.pixel(1, 0), &[0, 0, 255]); // blue
    /// ```
    pub fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let b = self.bytes_per_pixel();
        let i = (y as usize * self.width as usize + x as usize) * b;
        &self.data[i..i + b]
    }
}

/// A decoded picture of the camera, lent to
/// [`crate::AnalyticsPlugin::on_frame`] for the duration of the call (it cannot
/// be kept: copy what you need with [`Frame::pixels`]).
///
/// Asking for pixels is the expensive part: the host scales and converts the
/// picture and copies it into the plugin's memory. Ask for the smallest width
/// that works (analysis at 160–320 pixels wide is typical) and only once per
/// frame.
///
/// ```no_run
/// # use vigil_plugin_sdk::{Frame, PixelFormat};
/// fn look(frame: &Frame<'_>) -> vigil_plugin_sdk::Result<()> {
///     // A grey copy at most 320 pixels wide, scaled on the host.
///     let small = frame.pixels(PixelFormat::Gray8, 320)?;
///     assert!(small.width <= 320);
///     let _ = (frame.width(), frame.media_time_ns(), frame.is_key());
///     Ok(())
/// }
/// ```
pub struct Frame<'a> {
    raw: &'a frames::Frame,
}

impl<'a> Frame<'a> {
    #[doc(hidden)]
    pub fn from_raw(raw: &'a frames::Frame) -> Self {
        Self { raw }
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn raw(&self) -> &'a frames::Frame {
        self.raw
    }

    /// The camera's id (the same as [`crate::camera`]).
    ///
    /// ```no_run
    /// # fn f(frame: &vigil_plugin_sdk::Frame<'_>) {
    /// vigil_plugin_sdk::debug!("frame of {}", frame.camera());
    /// # }
    /// ```
    pub fn camera(&self) -> String {
        self.raw.camera()
    }

    /// Full picture width in pixels, as decoded (before any scaling).
    ///
    /// ```no_run
    /// # fn f(frame: &vigil_plugin_sdk::Frame<'_>) {
    /// // Analyse at most a quarter of the camera's width.
    /// let analysis_width = (frame.width() / 4).max(64);
    /// # }
    /// ```
    pub fn width(&self) -> u32 {
        self.raw.width()
    }

    /// Full picture height in pixels, as decoded.
    ///
    /// ```no_run
    /// # fn f(frame: &vigil_plugin_sdk::Frame<'_>) {
    /// let aspect = frame.width() as f32 / frame.height() as f32;
    /// # }
    /// ```
    pub fn height(&self) -> u32 {
        self.raw.height()
    }

    /// Presentation time on the camera's clock, nanoseconds. It starts near zero
    /// when the host connects to the camera and starts over when the camera
    /// reconnects; in `vigil plugin run` it is the file's timeline. Prefer it to
    /// the wall clock for time-based logic (cooldowns, durations): the same input
    /// then gives the same events live and offline.
    ///
    /// ```no_run
    /// # fn f(frame: &vigil_plugin_sdk::Frame<'_>, last_event_ms: u64) {
    /// let now_ms = (frame.media_time_ns().max(0) / 1_000_000) as u64;
    /// let cooled_down = now_ms.saturating_sub(last_event_ms) >= 1000;
    /// # }
    /// ```
    pub fn media_time_ns(&self) -> i64 {
        self.raw.media_time_ns()
    }

    /// When the host decoded the frame, milliseconds since the UNIX epoch.
    ///
    /// ```no_run
    /// # fn f(frame: &vigil_plugin_sdk::Frame<'_>) {
    /// let seconds_since_epoch = frame.wall_time_ms() / 1000;
    /// # }
    /// ```
    pub fn wall_time_ms(&self) -> u64 {
        self.raw.wall_time_ms()
    }

    /// Whether this is a key frame (IDR): always true when the manifest asked for
    /// key frames only.
    ///
    /// ```no_run
    /// # fn f(frame: &vigil_plugin_sdk::Frame<'_>) {
    /// if frame.is_key() {
    ///     vigil_plugin_sdk::debug!("key frame at {} ns", frame.media_time_ns());
    /// }
    /// # }
    /// ```
    pub fn is_key(&self) -> bool {
        self.raw.is_key()
    }

    /// The pixels in `format`, scaled down on the host (bilinear, aspect ratio
    /// kept) so the width is at most `max_width`; 0, or a width at least the
    /// picture's, means full size (never scaled up). Scaled sizes are rounded
    /// down to even numbers, so read the size from the returned [`Image`].
    ///
    /// Fails (an [`crate::Error::Failed`] with the host's reason) when the host
    /// cannot convert the picture.
    ///
    /// ```no_run
    /// use vigil_plugin_sdk::{Frame, PixelFormat, Result};
    /// fn mean_luma(frame: &Frame<'_>) -> Result<f32> {
    ///     let img = frame.pixels(PixelFormat::Gray8, 160)?;
    ///     let sum: u64 = img.data.iter().map(|&p| u64::from(p)).sum();
    ///     Ok(sum as f32 / img.data.len().max(1) as f32)
    /// }
    /// ```
    pub fn pixels(&self, format: PixelFormat, max_width: u32) -> crate::Result<Image> {
        let f = match format {
            PixelFormat::Gray8 => types::PixelFormat::Gray8,
            PixelFormat::Rgb8 => types::PixelFormat::Rgb8,
        };
        let img = self
            .raw
            .pixels(f, max_width)
            .map_err(crate::Error::Failed)?;
        Ok(Image {
            width: img.width,
            height: img.height,
            format,
            data: img.data,
        })
    }
}
