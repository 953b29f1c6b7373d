//! Pixels for outputs that need them (snapshots, MJPEG; later analytics): H.264
//! decoding (openh264), I420 scaling (fast_image_resize, SIMD) and JPEG encoding
//! (libjpeg-turbo through `turbojpeg`, straight from the I420 planes, so there is no
//! colour conversion). The only module that imports these crates.
//!
//! Everything here is synchronous and CPU-bound: callers run it on blocking threads,
//! never on the async runtime's workers. Inputs (camera bitstreams) are untrusted:
//! failures are errors, never panics.

use fast_image_resize as fr;

use crate::error::{Error, ErrorKind, Result};
use crate::media::{Frame, VideoCodec, write_annex_b};

/// A decoded picture: planar I420 with tightly packed rows. Chroma planes are
/// `ceil(width / 2) × ceil(height / 2)`.
#[derive(Clone)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture({}x{})", self.width, self.height)
    }
}

impl Picture {
    fn chroma_dims(width: u32, height: u32) -> (u32, u32) {
        (width.div_ceil(2), height.div_ceil(2))
    }

    /// Mean luma, 0..=255: a cheap "is this picture blank" measure for tests.
    pub fn mean_luma(&self) -> f64 {
        if self.y.is_empty() {
            return 0.0;
        }
        self.y.iter().map(|&p| u64::from(p)).sum::<u64>() as f64 / self.y.len() as f64
    }
}

/// An H.264 decoder for one stream. Feed it every frame from a key frame on.
pub struct Decoder {
    inner: openh264::decoder::Decoder,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Decoder {
    pub fn new() -> Result<Self> {
        let inner = openh264::decoder::Decoder::new().map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot create the H.264 decoder: {e}"),
            )
        })?;
        Ok(Self {
            inner,
            scratch: Vec::with_capacity(64 * 1024),
        })
    }

    /// Decodes one access unit. `Ok(None)` when the decoder produced no picture for
    /// it (it needs more data, or the frame was skipped).
    pub fn decode(&mut self, frame: &Frame) -> Result<Option<Picture>> {
        if frame.info.video.codec != VideoCodec::H264 {
            return Err(Error::new(
                ErrorKind::FailedPrecondition,
                "the camera streams H.265; decoding (snapshots, MJPEG) supports H.264 only",
            ));
        }
        self.scratch.clear();
        write_annex_b(frame, true, &mut self.scratch);
        let decoded = self
            .inner
            .decode(&self.scratch)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("H.264 decode failed: {e}")))?;
        let Some(yuv) = decoded else { return Ok(None) };
        use openh264::formats::YUVSource;
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let copy = |plane: &[u8], stride: usize, w: usize, h: usize| -> Vec<u8> {
            let mut out = Vec::with_capacity(w * h);
            for row in 0..h {
                match plane.get(row * stride..row * stride + w) {
                    Some(r) => out.extend_from_slice(r),
                    None => out.resize(out.len() + w, 128),
                }
            }
            out
        };
        Ok(Some(Picture {
            width: w as u32,
            height: h as u32,
            y: copy(yuv.y(), ys, w, h),
            u: copy(yuv.u(), us, cw, ch),
            v: copy(yuv.v(), vs, cw, ch),
        }))
    }
}

/// Scales a picture to `width` (keeping the aspect ratio, even dimensions, never
/// upscaling). Bilinear convolution, SIMD where the CPU has it.
pub fn scale(p: &Picture, width: u32) -> Result<Picture> {
    let width = width.clamp(2, p.width.max(2)) & !1;
    if width >= p.width {
        return Ok(p.clone());
    }
    let height =
        ((u64::from(p.height) * u64::from(width) / u64::from(p.width.max(1))) as u32).max(2) & !1;
    scale_to(p, width, height)
}

/// Scales a picture to exactly `width`×`height` (up or down, aspect ratio not
/// kept: the caller decides the geometry, e.g. a letterbox). Bilinear, SIMD.
pub fn scale_to(p: &Picture, width: u32, height: u32) -> Result<Picture> {
    let (width, height) = (width.max(1), height.max(1));
    if (width, height) == (p.width, p.height) {
        return Ok(p.clone());
    }
    let (scw, sch) = Picture::chroma_dims(p.width, p.height);
    let (dcw, dch) = Picture::chroma_dims(width, height);
    let mut resizer = fr::Resizer::new();
    let opts =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    let mut plane = |src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32| -> Result<Vec<u8>> {
        let src = fr::images::ImageRef::new(sw, sh, src, fr::PixelType::U8)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("scale: {e}")))?;
        let mut dst = fr::images::Image::new(dw, dh, fr::PixelType::U8);
        resizer
            .resize(&src, &mut dst, &opts)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("scale: {e}")))?;
        Ok(dst.into_vec())
    };
    Ok(Picture {
        width,
        height,
        y: plane(&p.y, p.width, p.height, width, height)?,
        u: plane(&p.u, scw, sch, dcw, dch)?,
        v: plane(&p.v, scw, sch, dcw, dch)?,
    })
}

/// The luma plane scaled so the width is at most `max_width` (0: full size):
/// `(width, height, pixels)`, one byte per pixel.
pub fn gray8(p: &Picture, max_width: u32) -> Result<(u32, u32, Vec<u8>)> {
    let s = if max_width > 0 && max_width < p.width {
        Some(scale(p, max_width)?)
    } else {
        None
    };
    let p = s.as_ref().unwrap_or(p);
    Ok((p.width, p.height, p.y.clone()))
}

/// The picture as RGB (3 bytes per pixel, BT.601 limited range, as H.264 cameras
/// send) scaled so the width is at most `max_width` (0: full size).
pub fn rgb8(p: &Picture, max_width: u32) -> Result<(u32, u32, Vec<u8>)> {
    let s = if max_width > 0 && max_width < p.width {
        Some(scale(p, max_width)?)
    } else {
        None
    };
    let p = s.as_ref().unwrap_or(p);
    Ok((p.width, p.height, to_rgb(p)))
}

/// The picture as RGB at its own size (3 bytes per pixel, BT.601 limited range).
pub fn to_rgb(p: &Picture) -> Vec<u8> {
    let (w, h) = (p.width as usize, p.height as usize);
    let cw = w.div_ceil(2);
    let mut out = vec![0u8; w * h * 3];
    // Integer BT.601: R = 1.164(Y-16) + 1.596(V-128), etc., in 8.8 fixed point.
    for (row, line) in out.chunks_exact_mut(w * 3).enumerate() {
        let yrow = &p.y[row * w..row * w + w];
        let crow = (row / 2) * cw;
        for (x, px) in line.chunks_exact_mut(3).enumerate() {
            let y = (i32::from(yrow[x]) - 16) * 298;
            let u = i32::from(p.u[crow + x / 2]) - 128;
            let v = i32::from(p.v[crow + x / 2]) - 128;
            px[0] = ((y + 409 * v + 128) >> 8).clamp(0, 255) as u8;
            px[1] = ((y - 100 * u - 208 * v + 128) >> 8).clamp(0, 255) as u8;
            px[2] = ((y + 516 * u + 128) >> 8).clamp(0, 255) as u8;
        }
    }
    out
}

/// A reusable JPEG encoder (libjpeg-turbo), 4:2:0, fed I420 planes directly.
pub struct JpegEncoder {
    inner: turbojpeg::Compressor,
}

impl std::fmt::Debug for JpegEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JpegEncoder")
    }
}

impl JpegEncoder {
    /// `quality` 1..=100.
    pub fn new(quality: u8) -> Result<Self> {
        let err =
            |e: turbojpeg::Error| Error::new(ErrorKind::Internal, format!("JPEG encoder: {e}"));
        let mut inner = turbojpeg::Compressor::new().map_err(err)?;
        inner
            .set_quality(i32::from(quality.clamp(1, 100)))
            .map_err(err)?;
        inner.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(err)?;
        Ok(Self { inner })
    }

    /// Encodes a picture. Odd dimensions lose their last row or column (libjpeg-turbo
    /// wants 4:2:0 planes padded to even sizes).
    pub fn encode(&mut self, p: &Picture) -> Result<Vec<u8>> {
        let (cw, ch) = Picture::chroma_dims(p.width, p.height);
        let (w, h) = (p.width & !1, p.height & !1);
        // The library asserts on short planes: check here and fail softly instead.
        if w < 2
            || h < 2
            || p.y.len() < (p.width * p.height) as usize
            || p.u.len() < (cw * ch) as usize
            || p.v.len() < (cw * ch) as usize
        {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("JPEG encode: inconsistent {}x{} picture", p.width, p.height),
            ));
        }
        let image = turbojpeg::YuvPlanesImage {
            y_plane: &p.y[..],
            u_plane: &p.u[..],
            v_plane: &p.v[..],
            width: w as usize,
            height: h as usize,
            y_stride: p.width as usize,
            u_stride: cw as usize,
            v_stride: cw as usize,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        self.inner
            .compress_yuv_planes_to_vec(&image)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("JPEG encode failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Picture {
        let (cw, ch) = Picture::chroma_dims(w, h);
        Picture {
            width: w,
            height: h,
            y: (0..w * h).map(|i| ((i % w) * 255 / w) as u8).collect(),
            u: vec![100; (cw * ch) as usize],
            v: vec![150; (cw * ch) as usize],
        }
    }

    #[test]
    fn scales_keeping_aspect_and_never_upscales() {
        let p = gradient(640, 360);
        let s = scale(&p, 320).unwrap();
        assert_eq!((s.width, s.height), (320, 180));
        assert_eq!(s.y.len(), 320 * 180);
        assert_eq!(s.u.len(), 160 * 90);
        // The gradient survives: left dark, right bright.
        assert!(s.y[0] < 10 && s.y[319] > 240, "{} {}", s.y[0], s.y[319]);
        let same = scale(&p, 4000).unwrap();
        assert_eq!((same.width, same.height), (640, 360));
        let odd = scale(&gradient(641, 361), 321).unwrap();
        assert_eq!((odd.width % 2, odd.height % 2), (0, 0));
    }

    #[test]
    fn converts_to_gray_and_rgb() {
        let mut p = gradient(64, 36);
        p.u.fill(128);
        p.v.fill(128);
        let (w, h, g) = gray8(&p, 32).unwrap();
        assert_eq!((w, h, g.len()), (32, 18, 32 * 18));
        let (w, h, rgb) = rgb8(&p, 0).unwrap();
        assert_eq!((w, h, rgb.len()), (64, 36, 64 * 36 * 3));
        // Neutral chroma gives grey: R = G = B, and luma 235 is white.
        assert_eq!(rgb[0], rgb[1]);
        assert_eq!(rgb[1], rgb[2]);
        let mut white = gradient(4, 4);
        white.y.fill(235);
        white.u.fill(128);
        white.v.fill(128);
        assert!(rgb8(&white, 0).unwrap().2.iter().all(|&c| c >= 254));
    }

    #[test]
    fn encodes_a_valid_jpeg() {
        let mut enc = JpegEncoder::new(80).unwrap();
        for (w, h) in [(640, 360), (321, 181), (16, 16)] {
            let jpeg = enc.encode(&gradient(w, h)).unwrap();
            assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
            assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "EOI");
            // The SOF0/SOF2 header carries the dimensions.
            let sof = jpeg
                .windows(2)
                .position(|w| w == [0xff, 0xc0] || w == [0xff, 0xc2])
                .unwrap();
            let hh = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
            let ww = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
            assert_eq!((u32::from(ww), u32::from(hh)), (w & !1, h & !1));
        }
    }
}
