//! The one `bindgen!` site: host bindings of the `vigil:plugin` worlds (`wit/`).
//! The `analytics` world generates the shared imported interfaces; the other
//! worlds reuse them through `with`, so there is one `Host` trait per interface.

pub mod analytics {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "analytics",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "vigil:plugin/frames.frame": crate::plugins::host_impl::FrameData,
            "vigil:plugin/inference.model": crate::plugins::host_impl::ModelHandle,
        },
    });
}

pub mod rule {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "rule",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "vigil:plugin/types": super::analytics::vigil::plugin::types,
            "vigil:plugin/host": super::analytics::vigil::plugin::host,
            "vigil:plugin/state": super::analytics::vigil::plugin::state,
        },
    });
}

pub mod output {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "output",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "vigil:plugin/types": super::analytics::vigil::plugin::types,
            "vigil:plugin/host": super::analytics::vigil::plugin::host,
            "vigil:plugin/state": super::analytics::vigil::plugin::state,
        },
    });
}
