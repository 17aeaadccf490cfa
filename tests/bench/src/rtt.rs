#[derive(clap::Args, Debug, Clone)]
pub struct RttArgs {}
pub fn main(_a: RttArgs) -> anyhow::Result<()> {
    Ok(())
}
