"""Saving images the A1111 way: file-name patterns, sequence numbers, infotext in PNG/JPEG/WebP metadata, grids."""
import datetime
import functools
import hashlib
import inspect
import itertools
import logging
import math
import os
import re
import secrets
import string
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import piexif
import piexif.helper
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from modules import script_callbacks

log = logging.getLogger(__name__)

_INVALID_CHARS = str.maketrans({char: "_" for char in '#<>:"/\\|?*\n\r\t'})
_INVALID_CHARS_UNIX = str.maketrans({"/": "_"})
_JPEG_MAX_SIDE = 65535
_WEBP_MAX_SIDE = 16383
_EXIF_EXTENSIONS = {"jpg", "jpeg", "webp", "avif"}
_JPEG_MODES = {"RGB", "L", "CMYK"}
_EXIF_IFD = 0x8769
_USER_COMMENT = piexif.ExifIFD.UserComment
# image.info entries that describe the encoding, not the generation (A1111 hides the same ones)
_IGNORED_INFO_KEYS = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background", "timestamp",
    "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop",
}
# room left in a file name for the sequence number, a "-N" collision suffix and the extension
_NAME_RESERVE = 24


def _live_opts(opts, p=None):
    """The settings given, else p's job's or the running job's (job_context), else the saved ones."""
    if opts is not None:
        return opts
    from modules import job_context
    return job_context.settings(p)


def sanitize_filename_part(text, replace_spaces=True, *, max_length=128, unix=False) -> str | None:
    """Make text safe inside a file name: bad characters to "_", no leading spaces, no trailing spaces/dots, cut to max_length."""
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate(_INVALID_CHARS_UNIX if unix else _INVALID_CHARS)
    return text.lstrip(" ")[:max_length].rstrip(" .")


_UNKNOWN = object()
_TOKEN = re.compile(r"\[([^\[\]]+)\]")
_TOKEN_PARTS = re.compile(r"([^<>]+)((?:<[^<>]*>)*)")
_TOKEN_ARG = re.compile(r"<([^<>]*)>")
_NON_LETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")
_SEQUENCE = re.compile(r"[0-9]+")


def _length(args, default):
    """The optional `<n>` length argument of the hash tokens."""
    return int(args[0]) if args and args[0] != "" else default


def _hash_text(text, args):
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()[:_length(args, 8)]


def _zone(name):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # A1111 falls back to local time for an unknown zone


class FilenameGenerator:
    """Expands `[token]` / `[token<arg>...]` patterns (§5.2). A token without a value also drops the text before it."""

    default_time_format = "%Y%m%d%H%M%S"

    # token -> function(self, *args) returning the value or None (no value); extensions may add entries
    replacements = {
        "seed": lambda self: self.seed,
        "seed_first": lambda self: (self._batch_seeds() or [self.seed])[0],
        "seed_last": lambda self: self._seed_last(),
        "steps": lambda self: self._attr("steps"),
        "cfg": lambda self: self._attr("cfg_scale"),
        "width": lambda self: self._attr("width"),
        "height": lambda self: self._attr("height"),
        "sampler": lambda self: self._attr("sampler_name"),
        "scheduler": lambda self: self._attr("scheduler"),
        "sampler_scheduler": lambda self: self._sampler_scheduler(),
        "styles": lambda self: self._styles(),
        "model_hash": lambda self: self._attr("sd_model_hash"),
        "model_name": lambda self: self._attr("sd_model_name"),
        "date": lambda self: datetime.datetime.now().strftime("%Y-%m-%d"),
        "datetime": lambda self, *args: self._datetime(*args),
        "job_timestamp": lambda self: self._attr("job_timestamp"),
        "prompt": lambda self: None if self.prompt is None else self.prompt.replace(" ", "_"),
        "prompt_spaces": lambda self: self.prompt,
        "prompt_words": lambda self: self._prompt_words(),
        "prompt_no_styles": lambda self: self._prompt_no_styles(),
        "prompt_hash": lambda self, *args: _hash_text(self.prompt, args),
        "negative_prompt_hash": lambda self, *args: _hash_text(self._attr("negative_prompt"), args),
        "full_prompt_hash": lambda self, *args: _hash_text(self._full_prompt(), args),
        "batch_number": lambda self: self._batch_number(),
        "batch_size": lambda self: self._attr("batch_size"),
        "generation_number": lambda self: self._generation_number(),
        "hasprompt": lambda self, *args: self._hasprompt(*args),
        "clip_skip": lambda self: self._attr("clip_skip"),
        "denoising": lambda self: self._attr("denoising_strength") or None,
        "user": lambda self: self._attr("user"),
        "vae_filename": lambda self: self._vae_filename(),
        "image_hash": lambda self, *args: self._image_hash(*args),
        "basename": lambda self: self.basename or None,
        "none": lambda self: "",
    }

    def __init__(self, p, seed, prompt, image, zip=False, basename="", *, opts=None, max_length=128, unix=False,
                 style_prompts=None):
        self.p = p
        self.seed = seed
        self.prompt = prompt
        self.image = image
        self.zip = zip
        self.basename = basename
        self.opts = opts
        self.max_length = max_length
        self.unix = unix
        self.style_prompts = style_prompts

    def apply(self, x: str) -> str:
        """The pattern with every known token replaced; unknown tokens stay as written."""
        result = []
        start = 0
        for match in _TOKEN.finditer(x):
            text_before = x[start:match.start()]
            start = match.end()
            value = self._value_of(match.group(1))
            if value is _UNKNOWN:
                result.append(text_before + match.group(0))
            elif value is not None:
                result.append(text_before + value)
        result.append(x[start:])
        return "".join(result)

    def _value_of(self, token):
        parts = _TOKEN_PARTS.fullmatch(token)
        function = self.replacements.get(parts.group(1).lower()) if parts else None
        if function is None:
            return _UNKNOWN
        args = _TOKEN_ARG.findall(parts.group(2))
        try:
            inspect.signature(function).bind(self, *args)
        except TypeError:
            return _UNKNOWN  # arguments given to a token that takes none
        try:
            value = function(self, *args)
        except ValueError:
            return _UNKNOWN  # a malformed argument, e.g. a length that is not a number
        if value is None:
            return None
        return sanitize_filename_part(str(value), replace_spaces=False, max_length=self.max_length, unix=self.unix)

    def _attr(self, name):
        return getattr(self.p, name, None)

    def _batch_seeds(self):
        seeds, size = self._attr("all_seeds"), self._attr("batch_size")
        if not seeds or not size:
            return None
        first = (self._attr("iteration") or 0) * size
        return seeds[first:first + size] or None

    def _seed_last(self):
        seeds = self._batch_seeds()
        return seeds[-1] if seeds and len(seeds) > 1 else None

    def _sampler_scheduler(self):
        sampler, scheduler = self._attr("sampler_name"), self._attr("scheduler")
        if sampler is None:
            return None
        return sampler if scheduler in (None, "", "Automatic", "automatic") else f"{sampler} {scheduler}"

    def _styles(self):
        styles = self._attr("styles")
        if styles is None:
            return None
        return ", ".join(style for style in styles if style != "None") or "None"

    def _datetime(self, *args):
        time_format = args[0] if args and args[0] else self.default_time_format
        zone = _zone(args[1]) if len(args) > 1 else None
        return datetime.datetime.now(zone).strftime(time_format)

    def _prompt_words(self):
        words = [word for word in _NON_LETTERS.split(self.prompt or "") if word] or ["empty"]
        return " ".join(words[:_live_opts(self.opts).directories_max_prompt_words])

    def _style_prompts(self):
        if self.style_prompts is not None:
            return self.style_prompts
        styles = self._attr("styles")
        if not styles:
            return []
        from modules import shared
        return shared.prompt_styles.get_style_prompts(styles)

    def _prompt_no_styles(self):
        if self.prompt is None:
            return None
        text = self.prompt
        for style in self._style_prompts():
            # a style with {prompt} wraps the prompt: remove the text on each side of it
            for part in filter(None, style.split("{prompt}")):
                text = text.replace(part, "")
            text = re.sub(r",(\s*,)+", ",", text).strip(" ,\n")
        return text

    def _full_prompt(self):
        negative = self._attr("negative_prompt")
        return None if self.prompt is None or negative is None else f"{self.prompt} {negative}"

    def _batch_number(self):
        size, index = self._attr("batch_size"), self._attr("batch_index")
        if self.zip or size in (None, 1) or index is None:
            return None
        return index + 1

    def _generation_number(self):
        size, index = self._attr("batch_size"), self._attr("batch_index")
        n_iter, iteration = self._attr("n_iter"), self._attr("iteration")
        if self.zip or None in (size, index, n_iter, iteration) or (n_iter == 1 and size == 1):
            return None
        return iteration * size + index + 1

    def _hasprompt(self, *args):
        if self.prompt is None:
            return None
        prompt = self.prompt.lower()
        result = ""
        for arg in args:
            expected, _, default = arg.partition("|")
            result += expected.lower() if expected.lower() in prompt else default
        return result

    def _vae_filename(self):
        name = self._attr("sd_vae_name")
        if not name:
            return None
        parts = os.path.basename(name).split(".")
        # A1111 keeps the text before the first dot, skipping a leading dot
        return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]

    def _image_hash(self, *args):
        if self.image is None:
            return None
        return hashlib.sha256(self.image.tobytes()).hexdigest()[:_length(args, None)]


def get_next_sequence_number(path, basename) -> int:
    """One more than the highest `NNNNN` (or `<basename>-NNNN`) prefix among the files in path; 0 when none."""
    prefix = f"{basename}-" if basename else ""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    highest = -1
    for name in names:
        if name.startswith(prefix):
            first = os.path.splitext(name[len(prefix):])[0].split("-")[0]
            if _SEQUENCE.fullmatch(first):
                highest = max(highest, int(first))
    return highest + 1


def _reserve(filename) -> bool:
    """Create an empty file at filename unless something is already there."""
    try:
        os.close(os.open(filename, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        return True
    except FileExistsError:
        return False


def _new_temp_file(folder) -> str:
    """A fresh hidden file in folder (hidden, so it never counts as a numbered image)."""
    while True:
        temp = os.path.join(folder, f".{secrets.token_hex(8)}.tmp")
        if _reserve(temp):
            return temp


def _save_atomically(folder, stems, extension, replace, write) -> str:
    """write(temp path) in folder, then move it onto the first of stems that is free (or simply the first when replace)."""
    temp = _new_temp_file(folder)
    try:
        write(temp)
        targets = (os.path.join(folder, f"{stem}.{extension}") for stem in stems)
        target = next(name for name in targets if replace or _reserve(name))
        os.replace(temp, target)
        return target
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _numbered_stems(folder, basename, decoration):
    tail = f"-{decoration}" if decoration else ""
    for number in itertools.count(get_next_sequence_number(folder, basename)):
        yield (f"{basename}-{number:04}" if basename else f"{number:05}") + tail


def _suffixed_stems(stem):
    yield stem
    for number in itertools.count(1):
        yield f"{stem}-{number}"


def _fit_bytes(text, limit) -> str:
    """Cut text to at most limit bytes of UTF-8 (file systems count bytes), never in the middle of a character."""
    return text.encode()[:max(limit, 0)].decode(errors="ignore")


def _name_limit(folder) -> int:
    return os.statvfs(folder).f_namemax if hasattr(os, "statvfs") else 255


def _format_for_size(image, extension) -> str:
    too_large = (extension in ("jpg", "jpeg") and max(image.size) > _JPEG_MAX_SIDE
                 or extension == "webp" and max(image.size) > _WEBP_MAX_SIDE)
    if too_large:
        log.info("Image of %sx%s is too large for %s; saving as PNG", image.width, image.height, extension)
        return "png"
    return extension


def _decoration_pattern(p, seed, short_filename, opts) -> str:
    if short_filename or seed is None:
        return ""
    override = (getattr(p, "override_settings", None) or {}).get("samples_filename_pattern")
    return override or opts.samples_filename_pattern or ("[seed]" if opts.save_to_dirs else "[seed]-[prompt_spaces]")


def save_image(image, path, basename, seed=None, prompt=None, extension='png', info=None, short_filename=False, no_prompt=False,
               grid=False, pnginfo_section_name='parameters', p=None, existing_info=None, forced_filename=None, suffix="",
               save_to_dirs=None, *, opts=None, max_length=128, unix=False) -> tuple[str, str | None]:
    """Save image under path with A1111's folder and file naming and embedded infotext; returns (file, .txt sidecar or None).

    A numbered name never replaces an existing file; an un-numbered one follows `save_images_replace_action`."""
    opts = _live_opts(opts, p)
    namegen = FilenameGenerator(p, seed, prompt, image, basename=basename, opts=opts, max_length=max_length, unix=unix)
    extension = _format_for_size(image, extension.lstrip(".").lower())
    if save_to_dirs is None:
        save_to_dirs = opts.grid_save_to_dirs if grid else (opts.save_to_dirs and not no_prompt)
    if save_to_dirs:
        path = os.path.join(path, namegen.apply(opts.directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /"))
    folder = path or "."
    os.makedirs(folder, exist_ok=True)
    budget = _name_limit(folder) - _NAME_RESERVE - len(basename.encode())

    if forced_filename is not None:
        numbered, stems = False, _suffixed_stems(_fit_bytes(forced_filename, budget))
    else:
        decoration = _fit_bytes(namegen.apply(_decoration_pattern(p, seed, short_filename, opts)) + suffix, budget)
        numbered = opts.save_images_add_number or decoration == ""
        stems = _numbered_stems(folder, basename, decoration) if numbered else _suffixed_stems(decoration)
    replace = not numbered and opts.save_images_replace_action == "Replace"

    pnginfo = dict(existing_info or {})
    if info is not None:
        pnginfo[pnginfo_section_name] = info
    # as in A1111, infotext already present in existing_info is kept when no new one is given
    info = pnginfo.get(pnginfo_section_name)
    proposed = os.path.join(folder, f"{next(stems)}.{extension}")
    params = script_callbacks.ImageSaveParams(image, p, proposed, pnginfo)
    script_callbacks.before_image_saved_callback(params)  # extensions may change the image, its metadata or its file
    image, pnginfo = params.image, params.pnginfo
    info = pnginfo.get(pnginfo_section_name)
    stem, ext = os.path.splitext(os.path.basename(params.filename))
    if params.filename == proposed:
        stems = itertools.chain([stem], stems)
    else:
        folder, stems, extension, replace = os.path.dirname(params.filename) or ".", [stem], ext.lstrip("."), True

    def write(image_to_save, file_extension):
        def save(temp):
            save_image_with_geninfo(image_to_save, info, temp, file_extension, pnginfo, pnginfo_section_name, opts=opts)
        return save

    fullfn = _save_atomically(folder, stems, extension, replace, write(image, extension))
    # A1111 marks the image so the UI's Save button can reuse this file
    image.already_saved_as = fullfn
    params.filename = fullfn
    script_callbacks.image_saved_callback(params)
    stem = os.path.splitext(os.path.basename(fullfn))[0]

    if opts.export_for_4chan and extension not in ("jpg", "jpeg") and _needs_small_copy(image, fullfn, opts):
        small = _downscaled(image, opts.target_side_length)
        try:
            _save_atomically(folder, _suffixed_stems(stem), "jpg", replace, write(small, "jpg"))
        except OSError as error:
            log.error("Could not write the downscaled JPEG copy of %s: %s", fullfn, error)

    txt_fullfn = None
    if opts.save_txt and info is not None:
        txt_fullfn = _save_atomically(folder, [stem], "txt", True, lambda temp: _write_text(temp, f"{info}\n"))
    return fullfn, txt_fullfn


def _write_text(filename, text):
    with open(filename, "w", encoding="utf8") as file:
        file.write(text)


def _needs_small_copy(image, filename, opts) -> bool:
    """A1111's export_for_4chan rule: the image is wider/taller than target_side_length or its file exceeds the MB threshold."""
    oversize = max(image.size) > opts.target_side_length
    return oversize or os.path.getsize(filename) > opts.img_downscale_threshold * 1024 * 1024


def _downscaled(image, side):
    scale = side / max(image.size)
    if scale >= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def _png_info(geninfo, existing_pnginfo, section):
    items = dict(existing_pnginfo or {})
    items[section] = geninfo
    png_info = PngImagePlugin.PngInfo()
    for key, value in items.items():
        if value is not None:
            # Pillow writes tEXt, or iTXt by itself when the text is not latin-1
            png_info.add_text(key, str(value))
    return png_info


def _exif_with_comment(text) -> bytes:
    comment = piexif.helper.UserComment.dump(text, encoding="unicode")
    return piexif.dump({"Exif": {_USER_COMMENT: comment}})


def save_image_with_geninfo(image, geninfo, filename, extension=None, existing_pnginfo=None, pnginfo_section_name='parameters',
                            *, opts=None):
    """Write image to filename in the format of extension (default: filename's), with geninfo as PNG text or EXIF UserComment."""
    opts = _live_opts(opts)
    extension = (extension or os.path.splitext(filename)[1]).lstrip(".").lower()
    image_format = Image.registered_extensions().get(f".{extension}")
    if image_format is None:
        raise ValueError(f"Cannot save images as .{extension}: unknown image format")
    with_info = opts.enable_pnginfo
    if extension == "png":
        png_info = _png_info(geninfo, existing_pnginfo, pnginfo_section_name) if with_info else None
        image.save(filename, format=image_format, pnginfo=png_info)
    elif extension in _EXIF_EXTENSIONS:
        options = {"quality": opts.jpeg_quality}
        if extension == "webp":
            options["lossless"] = opts.webp_lossless
        if with_info and geninfo is not None:
            options["exif"] = _exif_with_comment(geninfo)
        if extension in ("jpg", "jpeg") and image.mode not in _JPEG_MODES:
            image = image.convert("RGB")
        image.save(filename, format=image_format, **options)
    elif extension == "gif" and with_info and geninfo is not None:
        image.save(filename, format=image_format, comment=geninfo)
    else:
        image.save(filename, format=image_format)


def _user_comment(exif_data) -> str | None:
    exif = Image.Exif()
    try:
        exif.load(exif_data)
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # metadata of an uploaded file may be damaged in any way; then it simply has no comment
        return None
    if comment is None or isinstance(comment, str):
        return comment
    try:
        return piexif.helper.UserComment.load(comment)
    except ValueError:
        return comment.decode("utf8", errors="ignore")


def read_info_from_image(image) -> tuple[str | None, dict]:
    """(infotext, other info items): `parameters` PNG text, else EXIF UserComment (JPEG/WebP), else GIF comment."""
    items = dict(image.info or {})
    geninfo = items.pop("parameters", None)
    if "exif" in items:
        geninfo = _user_comment(items["exif"]) or geninfo
    elif "comment" in items:
        comment = items["comment"]
        geninfo = comment.decode("utf8", errors="ignore") if isinstance(comment, bytes) else comment
    for key in _IGNORED_INFO_KEYS:
        items.pop(key, None)
    return (None if geninfo is None else str(geninfo)), items


def flatten(img, bgcolor):
    """The image laid over a solid bgcolor ("#ffffff", a name or an RGB tuple), as RGB: transparency (an alpha
    channel or a palette's transparent colour) shows the background; an opaque image only changes mode."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        background = Image.new("RGBA", img.size, bgcolor)
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def _grid_rows(count, batch_size, opts) -> int:
    if opts.n_rows > 0:
        return opts.n_rows
    if opts.n_rows == 0:
        return batch_size
    if opts.grid_prevent_empty_spots:
        rows = math.isqrt(count)
        while count % rows:
            rows -= 1
        return rows
    return round(math.sqrt(count))


def image_grid(imgs, batch_size=1, rows=None, *, opts=None):
    """Images in a grid of cells as large as the largest image (smaller ones centred); rows from `n_rows` when not given."""
    if not imgs:
        raise ValueError("image_grid needs at least one image")
    opts = _live_opts(opts)
    rows = min(rows if rows is not None else _grid_rows(len(imgs), batch_size, opts), len(imgs))
    params = script_callbacks.ImageGridLoopParams(imgs, math.ceil(len(imgs) / rows), rows)
    script_callbacks.image_grid_callback(params)  # extensions may reorder the images or change the layout (A1111)
    imgs, cols, rows = params.imgs, params.cols, params.rows
    width = max(img.width for img in imgs)
    height = max(img.height for img in imgs)
    grid = Image.new("RGB", (cols * width, rows * height), color=opts.grid_background_color)
    for index, img in enumerate(imgs):
        x = index % cols * width + (width - img.width) // 2
        y = index // cols * height + (height - img.height) // 2
        grid.paste(img, (x, y))
    return grid


class GridAnnotation:
    """One label of a grid legend; an inactive one is drawn in the inactive colour and struck through (prompt matrix)."""

    def __init__(self, text: str = "", is_active: bool = True):
        self.text = text
        self.is_active = is_active


@functools.lru_cache(maxsize=16)
def grid_font(path: str, size: int):
    """The `font` setting's file, else Pillow's built-in scalable font (present on every machine, no download)."""
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            log.warning("Grid font %s could not be loaded; using the built-in font", path)
    return ImageFont.load_default(size)


def _wrap(font, text: str, max_width: float) -> list[str]:
    """Words into lines no wider than max_width; a word wider than that gets a line of its own."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _label_lines(font, annotations, max_width) -> list[GridAnnotation]:
    return [GridAnnotation(line, a.is_active) for a in annotations for line in _wrap(font, a.text, max_width)]


def _draw_label(draw, font, lines, centre_x, top, line_height, spacing, colours) -> None:
    for line in lines:
        colour = colours[0] if line.is_active else colours[1]
        middle = top + line_height / 2
        draw.text((centre_x, middle), line.text, font=font, fill=colour, anchor="mm")
        if not line.is_active:
            half = font.getlength(line.text) / 2
            draw.line((centre_x - half, middle, centre_x + half, middle), fill=colour, width=max(line_height // 8, 1))
        top += line_height + spacing


def draw_grid_annotations(im, width, height, hor_texts, ver_texts, margin=0, *, opts=None):
    """Labels above the columns and left of the rows of a grid of width x height cells, with margin px between cells.

    hor_texts / ver_texts hold one list of GridAnnotation per column / row; text wraps to the cell width (the row
    labels to the left band's width). Without any row text there is no left band, without column text no top band.
    """
    opts = _live_opts(opts)
    cols, rows = len(hor_texts), len(ver_texts)
    if im.size != (cols * width, rows * height):
        raise ValueError(f"A grid of {cols}x{rows} cells of {width}x{height} must be {cols * width}x{rows * height}, "
                         f"not {im.width}x{im.height}")
    font_size = max((width + height) // 25, 10)  # A1111's scale (labels grow with the cells), legible on small ones
    font = grid_font(opts.font or "", font_size)
    spacing = font_size // 2
    ascent, descent = font.getmetrics()
    line_height = ascent + descent

    def block_height(lines):
        return len(lines) * line_height + max(len(lines) - 1, 0) * spacing

    pad_left = width * 3 // 4 if any(a.text for texts in ver_texts for a in texts) else 0
    hor_lines = [_label_lines(font, texts, width) for texts in hor_texts]
    ver_lines = [_label_lines(font, texts, pad_left) for texts in ver_texts]
    tallest = max(map(block_height, hor_lines), default=0)
    pad_top = tallest + 2 * spacing if tallest else 0

    result = Image.new("RGB", (pad_left + cols * width + (cols - 1) * margin, pad_top + rows * height + (rows - 1) * margin),
                       opts.grid_background_color)
    for row in range(rows):
        for col in range(cols):
            cell = im.crop((col * width, row * height, (col + 1) * width, (row + 1) * height))
            result.paste(cell, (pad_left + col * (width + margin), pad_top + row * (height + margin)))
    draw = ImageDraw.Draw(result)
    colours = (opts.grid_text_active_color, opts.grid_text_inactive_color)
    for col, lines in enumerate(hor_lines):
        centre_x = pad_left + col * (width + margin) + width / 2
        _draw_label(draw, font, lines, centre_x, (pad_top - block_height(lines)) / 2, line_height, spacing, colours)
    for row, lines in enumerate(ver_lines):
        top = pad_top + row * (height + margin) + (height - block_height(lines)) / 2
        _draw_label(draw, font, lines, pad_left / 2, top, line_height, spacing, colours)
    return result


def draw_prompt_matrix(im, width, height, all_prompts, margin=0, *, opts=None):
    """Prompt-matrix legend: all_prompts is the prompt split on "|"; the first half of the variable parts label the
    columns, the rest the rows, each shown active where the cell's combination includes it (bit i of its index)."""
    parts = all_prompts[1:]
    boundary = math.ceil(len(parts) / 2)
    hor_parts, ver_parts = parts[:boundary], parts[boundary:]

    def labels(texts):
        return [[GridAnnotation(text, bool(pos & (1 << i))) for i, text in enumerate(texts)] for pos in range(1 << len(texts))]

    return draw_grid_annotations(im, width, height, labels(hor_parts), labels(ver_parts), margin, opts=opts)


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int, upscaler_name: str | None = None) -> Image.Image:
    """A1111's resize modes: 0 just resize, 1 crop and resize, 2 resize and fill (3, latent upscale, resizes like 0 here).

    `upscaler_name` names an image upscaler for enlarging (Hires. fix, Extras); without one, Lanczos.
    """
    def resize(image, w, h):
        if upscaler_name and upscaler_name not in ("None", "Lanczos") and (image.width < w or image.height < h):
            from modules import upscaler  # image upscalers are optional at import time

            return upscaler.upscale_to(image, w, h, upscaler_name)
        resample = Image.NEAREST if upscaler_name == "Nearest" else Image.LANCZOS
        return image.resize((w, h), resample=resample)

    if resize_mode in (0, 3):
        return resize(im, width, height)
    ratio, src_ratio = width / height, im.width / im.height
    if resize_mode == 1:
        w = width if ratio > src_ratio else im.width * height // im.height
        h = height if ratio <= src_ratio else im.height * width // im.width
        resized = resize(im, w, h)
        res = Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - w // 2, height // 2 - h // 2))
        return res
    w = width if ratio < src_ratio else im.width * height // im.height
    h = height if ratio >= src_ratio else im.height * width // im.width
    resized = resize(im, w, h)
    res = Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - w // 2, height // 2 - h // 2))
    if ratio < src_ratio:  # fill the bands above and below with stretched edge rows
        fill_h = height // 2 - h // 2
        if fill_h > 0:
            res.paste(resized.resize((width, fill_h), box=(0, 0, width, 0)), box=(0, 0))
            res.paste(resized.resize((width, fill_h), box=(0, resized.height, width, resized.height)), box=(0, fill_h + h))
    elif ratio > src_ratio:
        fill_w = width // 2 - w // 2
        if fill_w > 0:
            res.paste(resized.resize((fill_w, height), box=(0, 0, 0, height)), box=(0, 0))
            res.paste(resized.resize((fill_w, height), box=(resized.width, 0, resized.width, height)), box=(fill_w + w, 0))
    return res
