#[derive(clap::Args, Debug, Clone)]
pub struct FootprintArgs {}
pub fn main(_a: FootprintArgs) -> anyhow::Result<()> {
    Ok(())
}
