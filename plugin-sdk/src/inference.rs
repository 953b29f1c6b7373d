//! Neural-network inference on the host (ONNX models, run by tract): the host
//! builds the model's input from a frame — scaled, letterboxed or stretched, in
//! the model's layout, channel order and normalization — so no pixels are
//! copied into the plugin; only the output tensors come back.
//!
//! Needs the `inference` capability ([`crate::Capability::Inference`]) granted
//! to the plugin. Runs happen on the host's bounded pool of inference threads:
//! when it is busy, [`Model::run_frame`] returns an error at once (skip this
//! frame, the next one will come); a run also fails when it cannot finish
//! within what is left of the call's deadline.
//!
//! ```no_run
//! use vigil_plugin_sdk::inference::{InputSpec, Model};
//! # fn f(frame: &vigil_plugin_sdk::Frame<'_>) -> vigil_plugin_sdk::Result<()> {
//! let model = Model::installed("yolov3-tiny-416x416")?;
//! let out = model.run_frame(frame, &InputSpec::letterbox_unit())?;
//! let boxes = &out.tensors[0];
//! assert_eq!(boxes.shape.len(), 3);
//! # Ok(()) }
//! ```

use crate::{Error, Frame, Result};

#[cfg(target_arch = "wasm32")]
use crate::wit::inference as raw;

/// Memory layout of the model's image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 1×3×H×W (planar).
    Nchw,
    /// 1×H×W×3 (interleaved).
    Nhwc,
}

/// How the frame is fitted into the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Scaled to the input size, aspect ratio not kept.
    Stretch,
    /// Scaled to fit with the aspect ratio kept and centred; the rest is padding.
    Letterbox,
}

/// How the host builds the input: each value is `(pixel × scale − mean[c]) /
/// std[c]` with the pixel in 0–255 and `c` in the model's channel order.
///
/// ```
/// use vigil_plugin_sdk::inference::{Fit, InputSpec};
/// // ImageNet-style normalization, stretched, BGR:
/// let spec = InputSpec { fit: Fit::Stretch, bgr: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], ..InputSpec::letterbox_unit() };
/// assert_eq!(spec.scale, 1.0 / 255.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// The model's layout (must match its input shape).
    pub layout: Layout,
    /// Blue, green, red channel order instead of red, green, blue.
    pub bgr: bool,
    /// Stretch or letterbox.
    pub fit: Fit,
    /// Multiplies the 0–255 pixel value first.
    pub scale: f32,
    /// Subtracted per channel after scaling.
    pub mean: [f32; 3],
    /// Divides per channel last (not 0).
    pub std: [f32; 3],
    /// Letterbox fill, 0–255 before scaling.
    pub pad: u8,
}

impl InputSpec {
    /// NCHW, RGB, letterboxed with grey (128) padding, values in 0–1: what
    /// Darknet/YOLO models expect.
    ///
    /// ```
    /// let s = vigil_plugin_sdk::inference::InputSpec::letterbox_unit();
    /// assert_eq!((s.pad, s.scale), (128, 1.0 / 255.0));
    /// ```
    pub fn letterbox_unit() -> Self {
        InputSpec {
            layout: Layout::Nchw,
            bgr: false,
            fit: Fit::Letterbox,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad: 128,
        }
    }
}

/// A tensor's name and shape.
///
/// ```
/// let t = vigil_plugin_sdk::inference::TensorInfo { name: "images".into(), shape: vec![1, 3, 416, 416] };
/// assert_eq!(t.shape[2], 416);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in the model.
    pub name: String,
    /// Its dimensions.
    pub shape: Vec<u32>,
}

/// An output tensor: f32 values, row-major.
///
/// ```
/// let t = vigil_plugin_sdk::inference::Tensor { name: "y".into(), shape: vec![2, 2], data: vec![1.0, 2.0, 3.0, 4.0] };
/// assert_eq!(t.data[t.shape[1] as usize], 3.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The output's name in the model.
    pub name: String,
    /// Its dimensions.
    pub shape: Vec<u32>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

/// Where the frame landed in the model's input, in input pixels: input point
/// `(x, y)` is at fraction `((x − left) / width, (y − top) / height)` of the
/// frame. Use [`Placement::to_frame`] to map boxes back.
///
/// ```
/// use vigil_plugin_sdk::inference::Placement;
/// // A 16:9 frame letterboxed into 416×416: a band 416×234 at top 91.
/// let p = Placement { left: 0.0, top: 91.0, width: 416.0, height: 234.0 };
/// let (x, y) = p.to_frame(208.0, 208.0);
/// assert!((x - 0.5).abs() < 1e-6 && (y - 0.5).abs() < 1e-2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// Left edge of the frame in the input.
    pub left: f32,
    /// Top edge of the frame in the input.
    pub top: f32,
    /// Width of the frame in the input.
    pub width: f32,
    /// Height of the frame in the input.
    pub height: f32,
}

impl Placement {
    /// An input point as fractions of the frame (may fall outside 0–1 in the
    /// padding: clamp boxes).
    ///
    /// ```
    /// use vigil_plugin_sdk::inference::Placement;
    /// let p = Placement { left: 10.0, top: 0.0, width: 100.0, height: 50.0 };
    /// assert_eq!(p.to_frame(60.0, 25.0), (0.5, 0.5));
    /// ```
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.left) / self.width, (y - self.top) / self.height)
    }
}

/// What a run returns.
///
/// ```
/// use vigil_plugin_sdk::inference::{Output, Placement};
/// let o = Output { tensors: vec![], placement: Placement { left: 0.0, top: 0.0, width: 1.0, height: 1.0 } };
/// assert!(o.tensors.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The model's outputs, in its order.
    pub tensors: Vec<Tensor>,
    /// Where the frame was placed in the input.
    pub placement: Placement,
}

/// A model loaded on the host. Loading the same bytes again (in this instance
/// or any other) shares one optimized plan; load once in `new` and keep it.
///
/// ```no_run
/// let m = vigil_plugin_sdk::inference::Model::installed("yolov3-tiny-416x416")?;
/// assert_eq!(m.input().shape.len(), 4);
/// # Ok::<(), vigil_plugin_sdk::Error>(())
/// ```
#[derive(Debug)]
pub struct Model {
    #[cfg(target_arch = "wasm32")]
    raw: raw::Model,
}

#[cfg(not(target_arch = "wasm32"))]
fn native() -> Error {
    Error::Failed("inference is only available inside the Vigil host".into())
}

impl Model {
    /// Loads ONNX bytes the plugin ships (e.g. `include_bytes!`).
    ///
    /// ```no_run
    /// let m = vigil_plugin_sdk::inference::Model::from_bytes(&[0u8; 4]);
    /// assert!(m.is_err()); // not an ONNX model
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        #[cfg(target_arch = "wasm32")]
        {
            raw::load(&raw::ModelSource::Bytes(bytes.to_vec()))
                .map(|raw| Model { raw })
                .map_err(Error::Failed)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = bytes;
            Err(native())
        }
    }

    /// Loads a model the operator installed on the host (`<models_dir>/<name>.onnx`).
    ///
    /// ```no_run
    /// let m = vigil_plugin_sdk::inference::Model::installed("yolov3-tiny-416x416")?;
    /// # Ok::<(), vigil_plugin_sdk::Error>(())
    /// ```
    pub fn installed(name: &str) -> Result<Model> {
        #[cfg(target_arch = "wasm32")]
        {
            raw::load(&raw::ModelSource::Installed(name.to_string()))
                .map(|raw| Model { raw })
                .map_err(Error::Failed)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = name;
            Err(native())
        }
    }

    /// The model's image input.
    ///
    /// ```no_run
    /// # let m = vigil_plugin_sdk::inference::Model::installed("m")?;
    /// let size = (m.input().shape[3], m.input().shape[2]); // NCHW: width, height
    /// # Ok::<(), vigil_plugin_sdk::Error>(())
    /// ```
    pub fn input(&self) -> TensorInfo {
        #[cfg(target_arch = "wasm32")]
        {
            let i = self.raw.input();
            TensorInfo {
                name: i.name,
                shape: i.shape,
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        unreachable!("no Model exists outside the host")
    }

    /// The model's outputs.
    ///
    /// ```no_run
    /// # let m = vigil_plugin_sdk::inference::Model::installed("m")?;
    /// for o in m.outputs() { println!("{} {:?}", o.name, o.shape); }
    /// # Ok::<(), vigil_plugin_sdk::Error>(())
    /// ```
    pub fn outputs(&self) -> Vec<TensorInfo> {
        #[cfg(target_arch = "wasm32")]
        {
            self.raw
                .outputs()
                .into_iter()
                .map(|i| TensorInfo {
                    name: i.name,
                    shape: i.shape,
                })
                .collect()
        }
        #[cfg(not(target_arch = "wasm32"))]
        unreachable!("no Model exists outside the host")
    }

    /// Runs the model on `frame`, the input built by the host per `spec`.
    ///
    /// ```no_run
    /// # use vigil_plugin_sdk::inference::{InputSpec, Model};
    /// # fn f(m: &Model, frame: &vigil_plugin_sdk::Frame<'_>) -> vigil_plugin_sdk::Result<()> {
    /// let out = m.run_frame(frame, &InputSpec::letterbox_unit())?;
    /// println!("{} outputs, frame at {:?}", out.tensors.len(), out.placement);
    /// # Ok(()) }
    /// ```
    pub fn run_frame(&self, frame: &Frame<'_>, spec: &InputSpec) -> Result<Output> {
        #[cfg(target_arch = "wasm32")]
        {
            let s = raw::InputSpec {
                layout: match spec.layout {
                    Layout::Nchw => raw::Layout::Nchw,
                    Layout::Nhwc => raw::Layout::Nhwc,
                },
                bgr: spec.bgr,
                fit: match spec.fit {
                    Fit::Stretch => raw::Fit::Stretch,
                    Fit::Letterbox => raw::Fit::Letterbox,
                },
                scale: spec.scale,
                mean: (spec.mean[0], spec.mean[1], spec.mean[2]),
                std: (spec.std[0], spec.std[1], spec.std[2]),
                pad: spec.pad,
            };
            let o = self.raw.run_frame(frame.raw(), s).map_err(Error::Failed)?;
            Ok(Output {
                tensors: o
                    .tensors
                    .into_iter()
                    .map(|t| Tensor {
                        name: t.name,
                        shape: t.shape,
                        data: t.data,
                    })
                    .collect(),
                placement: Placement {
                    left: o.placement.left,
                    top: o.placement.top,
                    width: o.placement.width,
                    height: o.placement.height,
                },
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (frame, spec);
            Err(native())
        }
    }
}
