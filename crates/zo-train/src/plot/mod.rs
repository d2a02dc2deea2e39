//! Plots of a run (PNG and SVG).
//!
//! [`LinePlot`] draws named series of `(x, y)` points; [`plot_run`] draws the training loss and the
//! validation score of a run from its [`Event`](crate::Event)s. SVG output needs no font (the viewer renders the
//! text). PNG text is drawn with a TrueType/OpenType font loaded at run time: the file named by
//! [`FONT_ENV`] if set, else the first of [`FONT_PATHS`] that exists. Files are written atomically
//! (see [`write_atomic`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Result, TrainError};
use crate::rundir::write_atomic;

mod run;
mod svg;

pub use run::plot_run;
use svg::SvgNoFont;

/// The environment variable naming the font file for PNG text (overrides [`FONT_PATHS`]).
pub const FONT_ENV: &str = "BSZO_PLOT_FONT";

/// Font files looked for, in order, when [`FONT_ENV`] is not set.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/google-noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Helvetica.ttc",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Line colours, one per series in turn: the "tab10" palette, then black and a dark gold, so that
/// up to 12 series (every optimizer of the family with room to spare) stay distinct.
const COLORS: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(153, 121, 0),
];

const FONT: &str = "sans-serif";

/// A named line of `(x, y)` points, drawn in the order given. Non-finite points are skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The name shown in the legend.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Vertical lines at given x values (e.g. the evaluation steps under a loss curve), drawn thin and
/// grey behind the series, with one legend entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerticalMarks {
    /// The name shown in the legend.
    pub name: String,
    /// The x values (non-finite ones, and those outside the data's x range, are skipped).
    pub at: Vec<f64>,
}

/// The colour of [`VerticalMarks`].
const MARK_COLOR: RGBColor = RGBColor(170, 170, 170);

/// A line plot: one or more series in distinct colours, with a legend.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePlot {
    /// The title above the plot.
    pub title: String,
    /// The x axis's label.
    pub x_label: String,
    /// The y axis's label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical marks behind the lines (`None`: none).
    pub marks: Option<VerticalMarks>,
    /// The y range shown; `None`: fitted to the data.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic x axis (points with x ≤ 0 are then skipped).
    pub log_x: bool,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

impl LinePlot {
    /// An empty plot, 800 × 500 pixels, linear axes fitted to the data.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            marks: None,
            y_range: None,
            log_x: false,
            size: (800, 500),
        }
    }

    /// Add a series.
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Add vertical marks.
    pub fn with_marks(mut self, marks: VerticalMarks) -> Self {
        self.marks = Some(marks);
        self
    }

    /// Whether no series has a point that can be drawn.
    pub fn is_empty(&self) -> bool {
        self.series
            .iter()
            .all(|s| s.points.iter().all(|&p| !self.keep(p)))
    }

    /// Write the plot as SVG to `path` (no font needed).
    pub fn write_svg(&self, path: &Path) -> Result<()> {
        let mut svg = String::new();
        {
            let size = self.checked_size(path)?;
            let root = SvgNoFont(SVGBackend::with_string(&mut svg, size)).into_drawing_area();
            self.draw(root).map_err(|e| plot_err(path, e))?;
        }
        write_atomic(path, svg.as_bytes())
    }

    /// Write the plot as PNG to `path`. Fails with [`TrainError::NoFont`] when no font is found.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let (w, h) = self.checked_size(path)?;
        load_font(path)?;
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(root).map_err(|e| plot_err(path, e))?;
        }
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&rgb).and_then(|()| writer.finish()))
            .map_err(|e| plot_err(path, e))?;
        write_atomic(path, &bytes)
    }

    /// Write `stem.svg`, then `stem.png`; the paths written. When the PNG fails (e.g. no font), the
    /// SVG is on disk and the PNG's error is returned.
    pub fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        let svg = with_ext(stem, "svg");
        self.write_svg(&svg)?;
        let png = with_ext(stem, "png");
        self.write_png(&png)?;
        Ok(vec![svg, png])
    }

    /// The size, if drawable: 16 to 16384 pixels each way.
    fn checked_size(&self, path: &Path) -> Result<(u32, u32)> {
        let ok = |n: u32| (16..=16384).contains(&n);
        if ok(self.size.0) && ok(self.size.1) {
            Ok(self.size)
        } else {
            let (w, h) = self.size;
            Err(plot_err(
                path,
                format!("size {w}×{h} is outside 16 to 16384 pixels"),
            ))
        }
    }

    fn keep(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let points = || self.series.iter().flat_map(|s| &s.points).copied();
        let kept = || points().filter(|&p| self.keep(p));
        let x = padded(kept().map(|p| p.0), self.log_x);
        let y = match self.y_range {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
            _ => padded(kept().map(|p| p.1), false),
        };
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, (FONT, 22))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(45)
            .y_label_area_size(65);
        if self.log_x {
            self.draw_chart(&mut builder, (x.0..x.1).log_scale(), y)?;
        } else {
            self.draw_chart(&mut builder, x.0..x.1, y)?;
        }
        root.present()
    }

    fn draw_chart<DB, X>(
        &self,
        builder: &mut ChartBuilder<'_, '_, DB>,
        x_spec: X,
        (y0, y1): (f64, f64),
    ) -> DrawResult<DB>
    where
        DB: DrawingBackend,
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = builder.build_cartesian_2d(x_spec, y0..y1)?;
        let log_x = self.log_x;
        let x_tick = move |v: &f64| {
            if log_x && !round_log(*v) {
                String::new()
            } else {
                tick(v)
            }
        };
        chart
            .configure_mesh()
            .x_label_formatter(&x_tick)
            .y_label_formatter(&tick)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let x_range = chart.x_range();
        let marks: Vec<f64> = self
            .marks
            .iter()
            .flat_map(|m| &m.at)
            .copied()
            .filter(|&x| self.keep((x, y0)) && x >= x_range.start && x <= x_range.end)
            .collect();
        for &x in &marks {
            chart.draw_series(LineSeries::new(
                [(x, y0), (x, y1)],
                MARK_COLOR.stroke_width(1),
            ))?;
        }
        // The legend's entries: the series, then the marks if any were drawn.
        let mut legend: Vec<(&str, ShapeStyle)> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), COLORS[i % COLORS.len()].stroke_width(2)))
            .collect();
        if let (Some(m), false) = (&self.marks, marks.is_empty()) {
            legend.push((m.name.as_str(), MARK_COLOR.stroke_width(1)));
        }
        let mut pixels = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<_> = s.points.iter().copied().filter(|&p| self.keep(p)).collect();
            pixels.extend(points.iter().map(|p| chart.backend_coord(p)));
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
        // plotters' own legend measures text with the font directly, which SVG must not need.
        let area = chart.plotting_area().strip_coord_spec();
        let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        let mut text = (0, 0);
        for (name, _) in &legend {
            let (w, h) = area.estimate_text_size(name, &style)?;
            text = (text.0.max(w as i32), text.1.max(h as i32));
        }
        let row = text.1 + 8;
        let (w, h) = (text.0 + 44, row * legend.len() as i32 + 8);
        let (aw, ah) = area.dim_in_pixel();
        let (right, bottom) = (aw as i32 - w - 10, ah as i32 - h - 10);
        if self.series.is_empty() || right < 10 || bottom < 10 {
            return Ok(());
        }
        // The corner that hides the fewest points (upper right on ties).
        let base = area.get_base_pixel();
        let covered = |&(x0, y0): &(i32, i32)| {
            let inside = |&(x, y): &(i32, i32)| {
                (x0..=x0 + w).contains(&(x - base.0)) && (y0..=y0 + h).contains(&(y - base.1))
            };
            pixels.iter().filter(|p| inside(p)).count()
        };
        let corners = [(right, 10), (10, 10), (right, bottom), (10, bottom)];
        let (x0, y0) = corners
            .into_iter()
            .min_by_key(covered)
            .unwrap_or(corners[0]);
        area.draw(&Rectangle::new(
            [(x0, y0), (x0 + w, y0 + h)],
            WHITE.mix(0.85).filled(),
        ))?;
        area.draw(&Rectangle::new(
            [(x0, y0), (x0 + w, y0 + h)],
            BLACK.mix(0.5),
        ))?;
        for (i, (name, color)) in legend.into_iter().enumerate() {
            let y = y0 + 4 + row * i as i32 + row / 2;
            area.draw(&PathElement::new(vec![(x0 + 8, y), (x0 + 32, y)], color))?;
            area.draw(&Text::new(name, (x0 + 38, y), style.clone()))?;
        }
        Ok(())
    }
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The range of `values`, widened a little (and made non-empty); `(0, 1)` (`(1, 10)` on a log
/// axis) when there are none.
fn padded(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    match (lo <= hi, log) {
        (false, false) => (0.0, 1.0),
        (false, true) => (1.0, 10.0),
        (true, true) if lo == hi => (lo / 2.0, hi * 2.0),
        (true, true) => (lo, hi),
        (true, false) => {
            let pad = if lo == hi {
                lo.abs().max(1.0) * 0.05
            } else {
                (hi - lo) * 0.03
            };
            (lo - pad, hi + pad)
        }
    }
}

/// An axis label: up to 4 decimals, no trailing zeros; scientific notation for very large or
/// small numbers.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Whether `v` is 1, 2 or 5 times a power of ten (the labels kept on a log axis).
fn round_log(v: f64) -> bool {
    let mantissa = v / 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
}

pub(crate) fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut name = OsString::from(stem.as_os_str());
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn plot_err(path: &Path, error: impl std::fmt::Display) -> TrainError {
    TrainError::Plot {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// The font file registered with plotters, once one has been loaded.
static FONT_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Register the font for PNG text (once per process; a failed search is retried next time).
fn load_font(png: &Path) -> Result<()> {
    let mut loaded = FONT_FILE.lock().unwrap_or_else(PoisonError::into_inner);
    if loaded.is_some() {
        return Ok(());
    }
    let (file, bytes) = match std::env::var_os(FONT_ENV) {
        Some(file) => {
            let file = PathBuf::from(file);
            let bytes = std::fs::read(&file).map_err(|e| TrainError::Plot {
                path: png.to_path_buf(),
                message: format!("cannot read the font {FONT_ENV}={}: {e}", file.display()),
            })?;
            (file, bytes)
        }
        None => FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (PathBuf::from(p), b)))
            .ok_or_else(|| TrainError::NoFont {
                path: png.to_path_buf(),
                env: FONT_ENV,
                tried: FONT_PATHS.iter().map(PathBuf::from).collect(),
            })?,
    };
    // plotters keeps fonts for the life of the process; this leaks one font file, once.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes).map_err(|_| {
        TrainError::Plot {
            path: png.to_path_buf(),
            message: format!("{} is not a TrueType/OpenType font", file.display()),
        }
    })?;
    *loaded = Some(file);
    Ok(())
}
