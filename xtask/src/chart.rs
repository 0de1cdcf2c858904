//! The bench charts: one bar per (case, allocator), its height the median ratio against mimalloc,
//! its error bar the samples' lowest and highest ratio, drawn with plotters' SVG backend (text is
//! written as SVG text, so no system font is read). A bar past the axis is cut at the axis and
//! marked with a triangle and its value (a whisker past it, with an open triangle); the caption
//! says which commit ran, when, and where.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::Result;

/// One bar: ratios against mimalloc's median (1.0 = mimalloc).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    /// The case the bar belongs to (`pairs 64 B`, `larson x2`...): bars of one case stand together.
    pub(crate) case: String,
    pub(crate) allocator: String,
    /// The median's ratio.
    pub(crate) median: f64,
    /// The lowest and highest sample's ratio, where the row has samples of this metric.
    pub(crate) range: Option<(f64, f64)>,
}

/// A chart: its title, the caption's line (commit, date, machine), a note under it, and its bars
/// in order, the bars of one case next to each other.
pub(crate) struct Chart<'a> {
    pub(crate) title: String,
    pub(crate) caption: String,
    pub(crate) note: String,
    /// The allocators in legend order (each bar's colour is its allocator's place here).
    pub(crate) allocators: &'a [String],
    pub(crate) bars: Vec<Bar>,
}

/// The axis ends at this ratio at most: a bar past it is cut and marked.
pub(crate) const MAX_RATIO: f64 = 4.0;

/// The colour of the error bars, and of nothing else in a chart.
const WHISKER: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// The colour of the marks on a cut bar, and of nothing else in a chart.
const CLIPPED: RGBColor = RGBColor(0xc0, 0x00, 0x20);

const PALETTE: [RGBColor; 12] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
    RGBColor(0x6b, 0x6e, 0xcf),
    RGBColor(0x8c, 0xd1, 0x7d),
];

/// Bar, gap and margin sizes in pixels.
const BAR_PX: u32 = 10;
const GAP_PX: u32 = 14;
const LEFT_PX: u32 = 60;
const LEGEND_PX: u32 = 150;
/// Room above the plot for the cut bars' values, and below it for the caption.
const TOP_PX: u32 = 78;
const BOTTOM_PX: u32 = 44;
const PLOT_PX: u32 = 280;

/// The cases in order of first appearance, each with its bars.
fn cases(bars: &[Bar]) -> Vec<(&str, Vec<&Bar>)> {
    let mut out: Vec<(&str, Vec<&Bar>)> = Vec::new();
    for b in bars {
        match out.iter_mut().find(|(c, _)| *c == b.case) {
            Some((_, v)) => v.push(b),
            None => out.push((&b.case, vec![b])),
        }
    }
    out
}

/// The chart as an SVG document.
pub(crate) fn svg(chart: &Chart) -> Result<String> {
    let cases = cases(&chart.bars);
    let per_case = cases.iter().map(|(_, b)| b.len()).max().unwrap_or(1).max(1);
    let case_px = per_case as u32 * BAR_PX + GAP_PX;
    let longest = cases.iter().map(|(c, _)| c.len()).max().unwrap_or(4) as u32;
    let label_px = 14 + longest * 7;
    // Wide enough for the bars and for the longest line of text (about 7 pixels a character).
    let text_px = [&chart.title, &chart.caption, &chart.note]
        .iter()
        .map(|t| t.chars().count() as u32 * 7 + 20)
        .max()
        .unwrap_or(0);
    let width = (LEFT_PX + (cases.len().max(1) as u32) * case_px + LEGEND_PX).max(text_px);
    let height = TOP_PX + PLOT_PX + label_px + BOTTOM_PX;
    // The axis: a little above the highest whisker, between 1.5x and MAX_RATIO.
    let highest = chart
        .bars
        .iter()
        .map(|b| b.range.map_or(b.median, |r| r.1.max(b.median)))
        .fold(0.0f64, f64::max);
    let top = ((highest * 1.1 * 2.0).ceil() / 2.0).clamp(1.5, MAX_RATIO);

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        draw(chart, &cases, per_case, top, &root, (label_px, width)).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(
    chart: &Chart,
    cases: &[(&str, Vec<&Bar>)],
    per_case: usize,
    top: f64,
    root: &Area,
    (label_px, width): (u32, u32),
) -> DrawResult {
    root.fill(&WHITE)?;
    let n = cases.len().max(1) as f64;
    let (plot_area, legend) = root.split_horizontally(width - LEGEND_PX);
    let mut plot = ChartBuilder::on(&plot_area)
        .margin_top(TOP_PX)
        .margin_bottom(BOTTOM_PX)
        .margin_right(10)
        .x_label_area_size(label_px)
        .y_label_area_size(LEFT_PX - 10)
        .build_cartesian_2d(0.0..n, 0.0..top)?;
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_max_light_lines(1)
        .y_label_formatter(&|y| format!("{y:.1}x"))
        .y_desc("ratio against mimalloc")
        .draw()?;
    // The cases' names under the axis, reading down from the middle of each case.
    let down = ("sans-serif", 13)
        .into_font()
        .transform(FontTransform::Rotate90)
        .into_text_style(root)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (c, (case, _)) in cases.iter().enumerate() {
        let (x, y) = plot.backend_coord(&(c as f64 + 0.5, 0.0));
        root.draw(&Text::new(case.to_string(), (x, y + 6), down.clone()))?;
    }
    // mimalloc's level.
    plot.draw_series(std::iter::once(PathElement::new(
        vec![(0.0, 1.0), (n, 1.0)],
        BLACK.stroke_width(1),
    )))?;

    let bar_w = 0.8 / per_case as f64;
    let colour = |a: &str| {
        let i = chart
            .allocators
            .iter()
            .position(|x| x == a)
            .unwrap_or(chart.allocators.len());
        PALETTE[i % PALETTE.len()]
    };
    let mut cut = Vec::new();
    let mut cut_whiskers = Vec::new();
    for (c, (_, bars)) in cases.iter().enumerate() {
        for (i, b) in bars.iter().enumerate() {
            let x0 = c as f64 + 0.1 + i as f64 * bar_w;
            let mid = x0 + bar_w / 2.0;
            let h = b.median.min(top);
            plot.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + bar_w * 0.9, h)],
                colour(&b.allocator).filled(),
            )))?;
            if let Some((low, high)) = b.range {
                plot.draw_series(std::iter::once(ErrorBar::new_vertical(
                    mid - bar_w * 0.05,
                    low.min(top),
                    h,
                    high.min(top),
                    WHISKER.stroke_width(1),
                    5,
                )))?;
            }
            let at_top = plot.backend_coord(&(mid - bar_w * 0.05, top));
            if b.median > top {
                cut.push((at_top, b.median));
            } else if b.range.is_some_and(|(_, high)| high > top) {
                cut_whiskers.push(at_top);
            }
        }
    }
    // A cut bar: a triangle on the axis's top edge, its value above it (on the root area, which
    // has room above the plot).
    let value_style = ("sans-serif", 12)
        .into_font()
        .color(&CLIPPED)
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for ((x, y), value) in cut {
        root.draw(&Polygon::new(
            vec![(x - 5, y - 1), (x + 5, y - 1), (x, y - 10)],
            CLIPPED.filled(),
        ))?;
        root.draw(&Text::new(
            format!("{value:.2}x"),
            (x, y - 13),
            value_style.clone(),
        ))?;
    }

    // A whisker past the top (its bar is not): an open triangle where it is cut.
    for (x, y) in cut_whiskers {
        root.draw(&PathElement::new(
            vec![(x - 4, y - 1), (x + 4, y - 1), (x, y - 8), (x - 4, y - 1)],
            CLIPPED.stroke_width(1),
        ))?;
    }

    let title = ("sans-serif", 16).into_font();
    root.draw(&Text::new(chart.title.clone(), (10, 8), title))?;
    let small = ("sans-serif", 12).into_font();
    let bottom = root.dim_in_pixel().1 as i32;
    root.draw(&Text::new(
        chart.caption.clone(),
        (10, bottom - 36),
        small.clone(),
    ))?;
    root.draw(&Text::new(
        chart.note.clone(),
        (10, bottom - 20),
        small.clone(),
    ))?;

    for (i, a) in chart.allocators.iter().enumerate() {
        let y = TOP_PX as i32 + 16 * i as i32;
        legend.draw(&Rectangle::new(
            [(6, y), (18, y + 12)],
            PALETTE[i % PALETTE.len()].filled(),
        ))?;
        legend.draw(&Text::new(a.clone(), (24, y), small.clone()))?;
    }
    Ok(())
}
