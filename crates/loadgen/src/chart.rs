//! PNG charts of a suite run (plotters' bitmap backend; text through ab_glyph with a
//! TrueType font read from the system's usual font directories).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Fonts tried in order (Debian `fonts-dejavu-core` ships the first).
const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Registers the first font found as plotters' "sans-serif" (once per process).
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = FONT_FILES
                .iter()
                .find_map(|path| std::fs::read(path).ok())
                .ok_or_else(|| {
                    format!(
                        "no TrueType font found (tried {FONT_FILES:?}; install fonts-dejavu-core)"
                    )
                })?;
            // Lives for the rest of the process, as plotters needs.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "the font file could not be read".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// One server's latency curve: its name and `(offered rate, p50 ms, p99 ms)` points.
pub type LatencyCurve = (String, Vec<(f64, f64, f64)>);

const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

fn max_of(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}

/// Latency (p50 dashed-looking thin line, p99 thick) against offered load, one colour per
/// server. `curves`: `(server, [(rate, p50 ms, p99 ms)])`.
pub fn latency_vs_load(path: &Path, title: &str, curves: &[LatencyCurve]) -> Result<()> {
    ensure_font()?;
    let x_max = max_of(curves.iter().flat_map(|(_, p)| p.iter().map(|p| p.0))) * 1.05;
    let y_max = max_of(curves.iter().flat_map(|(_, p)| p.iter().map(|p| p.2))).max(0.1) * 1.1;
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("latency (ms)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.2)),
                color.stroke_width(3),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!("{name} p99"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(1),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
            });
        chart
            .draw_series(points.iter().flat_map(|p| {
                [
                    Circle::new((p.0, p.2), 4, color.filled()),
                    Circle::new((p.0, p.1), 3, color.filled()),
                ]
            }))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Server RSS against connected users, one colour per server.
/// `curves`: `(server, [(connections, MiB)])`.
pub fn rss_vs_connections(
    path: &Path,
    title: &str,
    curves: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    ensure_font()?;
    let x_max = max_of(curves.iter().flat_map(|(_, p)| p.iter().map(|p| p.0))) * 1.05;
    let y_max = max_of(curves.iter().flat_map(|(_, p)| p.iter().map(|p| p.1))).max(1.0) * 1.1;
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max.max(1.0), 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("connected users")
        .y_desc("server RSS (MiB)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(3),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_png_files() {
        if ensure_font().is_err() {
            eprintln!("no font on this machine; chart drawing not exercised");
            return;
        }
        let dir = std::env::temp_dir().join(format!("loadgen-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let latency = dir.join("latency.png");
        latency_vs_load(
            &latency,
            "t",
            &[("a".into(), vec![(1000.0, 0.5, 1.0), (2000.0, 0.7, 3.0)])],
        )
        .unwrap();
        let rss = dir.join("rss.png");
        rss_vs_connections(
            &rss,
            "t",
            &[("a".into(), vec![(0.0, 10.0), (1000.0, 40.0)])],
        )
        .unwrap();
        for file in [latency, rss] {
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(&bytes[1..4], b"PNG");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
