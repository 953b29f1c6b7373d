//! Frames as analytics plugins see them: pixels stay on the host until asked for
//! and come scaled and converted.

use crate::wit::{frames, types};

/// Pixel layouts the host hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// One byte of luma per pixel: the cheapest, enough for motion.
    Gray8,
    /// Three bytes (red, green, blue) per pixel.
    Rgb8,
}

/// Pixels of a frame: rows top to bottom, no padding.
///
/// ```
/// use vigil_plugin_sdk::{Image, PixelFormat};
/// let img = Image { width: 2, height: 1, format: PixelFormat::Gray8, data: vec![10, 20] };
/// assert_eq!(img.pixel(1, 0), &[20]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub data: Vec<u8>,
}

impl Image {
    /// Bytes per pixel of the format.
    pub fn bytes_per_pixel(&self) -> usize {
        match self.format {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb8 => 3,
        }
    }

    /// The bytes of one pixel.
    pub fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let b = self.bytes_per_pixel();
        let i = (y as usize * self.width as usize + x as usize) * b;
        &self.data[i..i + b]
    }
}

/// A decoded picture of the camera, lent to [`crate::AnalyticsPlugin::on_frame`].
///
/// ```no_run
/// # use vigil_plugin_sdk::{Frame, PixelFormat};
/// fn look(frame: &Frame<'_>) -> vigil_plugin_sdk::Result<()> {
///     // A 320-pixel-wide grey copy, scaled on the host.
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

    /// The camera's id.
    pub fn camera(&self) -> String {
        self.raw.camera()
    }

    /// Full picture width.
    pub fn width(&self) -> u32 {
        self.raw.width()
    }

    /// Full picture height.
    pub fn height(&self) -> u32 {
        self.raw.height()
    }

    /// Presentation time on the camera's clock, nanoseconds.
    pub fn media_time_ns(&self) -> i64 {
        self.raw.media_time_ns()
    }

    /// When the host received the frame, milliseconds since the UNIX epoch.
    pub fn wall_time_ms(&self) -> u64 {
        self.raw.wall_time_ms()
    }

    /// A key frame.
    pub fn is_key(&self) -> bool {
        self.raw.is_key()
    }

    /// The pixels in `format`, scaled down on the host (aspect kept) to at most
    /// `max_width` pixels wide; 0 means full size.
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
