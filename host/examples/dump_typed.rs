use tract_onnx::prelude::*;
fn main() -> TractResult<()> {
    let path = std::env::args().nth(1).unwrap();
    let m = tract_onnx::onnx().model_for_path(&path)?.into_typed()?;
    for id in m.eval_order()? {
        let n = m.node(id);
        let k = n.outputs[0].fact.konst.is_some();
        println!(
            "#{id} {} [{}] {:?} const={k} <- {:?}",
            n.name,
            n.op.name(),
            n.outputs[0].fact.shape,
            n.inputs
        );
    }
    Ok(())
}
