//! In-process destination scale measurement.
//!
//!   cargo run --release -p tulle-controller --example scale -- [ENDPOINTS] [WATCHERS] [CHANGES]
//!
//! Defaults: 5000 endpoints, 500 watchers, 20 changes. The last line states the figures.

use tulle_controller::scale::{ScaleOptions, measure};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let opts = ScaleOptions {
        endpoints: args.first().copied().unwrap_or(5000),
        watchers: args.get(1).copied().unwrap_or(500),
        changes: args.get(2).copied().unwrap_or(20),
    };
    println!("{opts:?}");
    let report = measure(opts).await.map_err(anyhow::Error::msg)?;
    println!("{report}");
    Ok(())
}
