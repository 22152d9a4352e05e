"""Augmentation of training batches on the device; validation batches never see any.

Three stages, each on whole batches where the model trains:

* waveforms: gain, time shift, coloured noise at an SNR range (or white noise of an absolute level,
  :class:`GaussianNoise`) and polarity inversion, by torch-audiomentations
  (per-clip probabilities and values);
* pitch shift and time stretch (``warp_domain``): of the power spectrogram, as a per-clip linear resampling of its
  frequency and time axes (:class:`SpectralWarp`, the fast option), or of the waveform, by torchaudio's phase
  vocoder and resampling as librosa computes them (:class:`WaveformWarp`, the Palanisamy code's);
* the normalised log-mels: SpecAugment frequency and time masks, by torchaudio. Masks come after normalisation,
  so a masked cell holds the training mean (0), not the dB floor, which would stand out as a loud "silence".

Random values come from torch's global generators, which ``trial_num`` seeds: on the CPU a run is reproducible.
An augmented input channel (``view_channels``) of a clip outside training is drawn once, from its own seed
(:func:`fixed_seed`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable
from fractions import Fraction

import torch
import torchaudio
from torch import nn
from torch_audiomentations.core.transforms_interface import BaseWaveformTransform
from torch_audiomentations.utils.object_dict import ObjectDict

from .config import WAVEFORM_AUGMENTATIONS, Config
from .features import apply_normalization, cpu_chunk, fits_on_device, frontend

# f_decay of torch-audiomentations' AddColoredNoise: the noise power falls as 1 / f**f_decay.
NOISE_DECAY = {"violet": -2.0, "blue": -1.0, "white": 0.0, "pink": 1.0, "brown": 2.0}


def waveform_active(cfg: Config) -> bool:
    """True when training batches must be made from waveforms every epoch (any random change before the
    log-mels); SpecAugment alone works on features computed once."""
    return any(getattr(cfg, key) > 0 for key in WAVEFORM_AUGMENTATIONS)


def spec_active(cfg: Config) -> bool:
    return cfg.spec_freq_masks > 0 or cfg.spec_time_masks > 0


def waveform_transform(cfg: Config) -> nn.Module | None:
    """The waveform stage: a torch-audiomentations ``Compose`` over (B, 1, samples), or None when off."""
    from torch_audiomentations import AddColoredNoise, Compose, Gain, PolarityInversion, Shift

    decay = NOISE_DECAY[cfg.noise_color]
    parts = [Gain(min_gain_in_db=-cfg.gain_db, max_gain_in_db=cfg.gain_db, p=cfg.gain_p, output_type="dict"),
             Shift(min_shift=-cfg.shift_max, max_shift=cfg.shift_max, rollover=cfg.shift_roll, p=cfg.shift_p,
                   output_type="dict"),
             AddColoredNoise(min_snr_in_db=cfg.noise_snr_min, max_snr_in_db=cfg.noise_snr_max, min_f_decay=decay,
                             max_f_decay=decay, p=cfg.noise_p, sample_rate=cfg.sample_rate, output_type="dict")
             if cfg.noise_sigma_max is None else GaussianNoise(cfg.noise_sigma_max, p=cfg.noise_p),
             PolarityInversion(p=cfg.polarity_p, output_type="dict")]
    parts = [t for t in parts if t.p > 0]
    return Compose(parts, output_type="dict") if parts else None


class GaussianNoise(BaseWaveformTransform):
    """White Gaussian noise of an absolute standard deviation drawn per clip uniformly in [0, ``max_sigma``] (the
    dual-stream paper's ``randn * uniform(0, 0.005)``), with probability ``p``. torch-audiomentations adds noise
    only at an SNR, relative to each clip's level; this is the absolute form in its interface, so that ``Compose``
    and the per-clip probability apply as to its own transforms."""

    supported_modes = {"per_example"}
    supports_multichannel = True
    requires_sample_rate = False

    def __init__(self, max_sigma: float, p: float):
        super().__init__(mode="per_example", p=p, output_type="dict")
        self.max_sigma = max_sigma

    def randomize_parameters(self, samples=None, sample_rate=None, targets=None, target_rate=None):
        self.transform_parameters["sigma"] = torch.rand(len(samples), device=samples.device) * self.max_sigma

    def apply_transform(self, samples=None, sample_rate=None, targets=None, target_rate=None):
        sigma = self.transform_parameters["sigma"].view(-1, 1, 1)
        return ObjectDict(samples=samples + torch.randn_like(samples) * sigma, sample_rate=sample_rate,
                          targets=targets, target_rate=target_rate)


class SpectralWarp:
    """Pitch shift and time stretch of (B, bins, frames) power spectrograms, each clip with its own factor.

    A pitch shift by ``s`` semitones scales every frequency by 2**(s/12): bin ``k`` takes the power at bin
    ``k / 2**(s/12)``. A time stretch by rate ``r`` plays the clip ``r`` times as fast: frame ``t`` takes the
    power at frame ``t * r``; a faster clip ends in silence, a slower one is cut at the clip's length. Both
    interpolate linearly between bins or frames, which is what torchaudio's phase vocoder does to magnitudes; we
    need no phase (nothing is turned back into audio), so this costs two gathers per clip instead of an STFT
    round trip. Written here because torch-audiomentations has no time stretch and its pitch shift resamples
    every clip on its own (about 0.25 s a 5 s clip on a CPU core), and torchaudio's ``PitchShift`` and
    ``TimeStretch`` take one factor per call, not per clip. It is the fast option of ``warp_domain``: on a batch of
    32 five-second 44.1 kHz clips at the default front end (2 CPU cores, heavily shared) it added 7-12 s to the
    front end's 7 s, where :class:`WaveformWarp` with the Palanisamy code's draws added 14-19 s.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def frames_read(self, frames: int) -> int:
        """Input frames that the first ``frames`` output frames read: up to the highest stretch rate times as many
        when the clip may play faster, plus the frame each one interpolates with."""
        faster = self.cfg.stretch_offsets[1]
        if self.cfg.stretch_p > 0 and faster > 0:
            return math.ceil((frames - 1) * (1 + faster)) + 2
        return frames

    def __call__(self, power: torch.Tensor) -> torch.Tensor:
        return self.drawn(len(power), power.device)(power)

    def drawn(self, n: int, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """The warp of ``n`` clips with their factors drawn now: the front end warps every channel (window) of a
        clip with it, so a clip's channels are pitched and stretched alike."""
        return functools.partial(self._apply, *draw_warps(self.cfg, n, device))

    @staticmethod
    def _apply(pitch: torch.Tensor, stretch: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        # Many clips at once, each at its own step (no per-clip loop, no host sync): torch's interpolate and
        # grid_sample take one scale per call or sample outside the grid differently. A GPU takes the whole batch,
        # the CPU CPU_WARP_CLIPS at a time: whole-batch temporaries leave its caches (64 clips of 257 x 501 bins on
        # a busy core: 6.4 ms a clip at once, 1.2 ms in twos, 1.1 ms one by one as before).
        step = len(power) if power.device.type != "cpu" else CPU_WARP_CLIPS
        out = []
        for i in range(0, len(power), step):
            p, s = pitch[i:i + step], stretch[i:i + step]
            out.append(_resample(_resample(power[i:i + step], 1, torch.exp2(-p.double() / 12).float(), p != 0),
                                 2, 1.0 + s, s != 0))
        return torch.cat(out)


# Clips a spectral warp reads at once on the CPU (see SpectralWarp._apply).
CPU_WARP_CLIPS = 2


def draw_warps(cfg: Config, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip, on ``device``, the pitch shift in semitones and the time stretch rate minus 1 (0 = none): with
    probability ``pitch_p`` uniform in +-``pitch_semitones`` (whole semitones with ``pitch_integer``), with
    probability ``stretch_p`` a rate uniform between ``cfg.stretch_rates``."""
    if cfg.pitch_integer and cfg.pitch_p > 0:
        whole = int(cfg.pitch_semitones)
        pitch = _gate(torch.randint(-whole, whole + 1, (n,), device=device).float(), cfg.pitch_p)
    else:
        pitch = _draw(n, cfg.pitch_p, -cfg.pitch_semitones, cfg.pitch_semitones, device)
    return pitch, _draw(n, cfg.stretch_p, *cfg.stretch_offsets, device)


def _draw(n: int, p: float, low: float, high: float, device: torch.device) -> torch.Tensor:
    """Per clip: uniform in [``low``, ``high``] with probability ``p``, else 0."""
    if p <= 0 or low == high == 0:
        return torch.zeros(n, device=device)
    return _gate((torch.rand(n, device=device) * 2 - 1) * ((high - low) / 2) + (high + low) / 2, p)


def _gate(values: torch.Tensor, p: float) -> torch.Tensor:
    """``values`` kept with probability ``p`` each, else 0."""
    return torch.where(torch.rand(len(values), device=values.device) < p, values, torch.zeros_like(values))


# librosa's STFT for effects.time_stretch and effects.pitch_shift (its defaults, which the Palanisamy code used).
VOCODER_FFT, VOCODER_HOP = 2048, 512
# A pitch shift resamples by 2**(-semitones/12) as the nearest fraction with a denominator up to this: within 0.03
# cent at whole semitones up to an octave, 0.85 cent at any shift, 30-45 ms a 5 s 44.1 kHz clip. torchaudio's
# pitch_shift resamples from int(sample_rate / rate) Hz instead, a ratio such as 10406:11025 (-1 semitone at
# 44.1 kHz) whose kernel costs 0.3-0.5 s a clip.
RATIO_DENOMINATOR = 1000


class WaveformWarp:
    """Pitch shift then time stretch of (B, samples) waveforms, each clip with its own draw, computed as librosa's
    ``effects.pitch_shift`` and ``effects.time_stretch`` (the Palanisamy code's order): torchaudio's phase vocoder on
    a 2048-point STFT with hop 512, and for a pitch shift torchaudio's resampling back to the clip's length. A
    stretched clip is cropped or padded back to its length (:func:`fit_length`); with ``resize_to`` it keeps its own
    length and the front end resizes its frames (:meth:`groups`).

    torchaudio's functions take one factor per call: the clips are grouped by drawn value, so whole-semitone draws
    cost one call per value, and continuous draws (any stretch rate) one call per clip, exact to the draw (on 32
    five-second 44.1 kHz clips, 2 shared CPU cores: 26 s for whole-semitone pitch and U(0.9, 1.2) stretch, 41-62 s
    for continuous pitch, whose resampling kernel is built for every clip).
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        out = wav.clone()
        for rows, stretched in self.groups(wav):
            out[rows] = fit_length(stretched, wav.shape[-1])
        return out

    def groups(self, wav: torch.Tensor) -> list[tuple[list[int], torch.Tensor]]:
        """The warped clips, grouped by length (a stretched clip is ``round(samples / rate)`` long): the clips'
        row numbers and their waveforms, the unstretched ones (at the clip's length) first."""
        # torchaudio's functions take one factor per call: the draws go to the host (one sync a batch).
        pitch, stretch = (t.tolist() for t in draw_warps(self.cfg, len(wav), wav.device))
        out = wav.clone() if any(pitch) else wav
        for semitones, rows in _groups(pitch):
            out[rows] = pitch_shift(out[rows], semitones)
        stretched = _groups(stretch)
        kept = sorted(set(range(len(wav))) - {i for _, rows in stretched for i in rows})
        groups = [(rows, time_stretch(out[rows], 1.0 + offset)) for offset, rows in stretched]
        return [(kept, out[kept]), *groups] if kept else groups


def _groups(values: list[float]) -> list[tuple[float, list[int]]]:
    """Each distinct non-zero value and the clips that drew it."""
    rows: dict[float, list[int]] = {}
    for i, v in enumerate(values):
        if v:
            rows.setdefault(v, []).append(i)
    return list(rows.items())


def time_stretch(wav: torch.Tensor, rate: float) -> torch.Tensor:
    """(B, samples) waveforms played ``rate`` times as fast at the same pitch, ``round(samples / rate)`` long:
    ``librosa.effects.time_stretch`` with torchaudio's phase vocoder (torchaudio has no waveform time stretch)."""
    window = torch.hann_window(VOCODER_FFT, device=wav.device)
    spec = torch.stft(wav, VOCODER_FFT, VOCODER_HOP, window=window, center=True, pad_mode="reflect",
                      return_complex=True)
    advance = torch.linspace(0, math.pi * VOCODER_HOP, spec.shape[-2], device=wav.device)[..., None]
    spec = torchaudio.functional.phase_vocoder(spec, rate, advance)
    return torch.istft(spec, VOCODER_FFT, VOCODER_HOP, window=window, length=round(wav.shape[-1] / rate))


def pitch_shift(wav: torch.Tensor, semitones: float) -> torch.Tensor:
    """(B, samples) waveforms ``semitones`` higher, as long as before: ``librosa.effects.pitch_shift``, a time
    stretch by 2**(-semitones/12) resampled back to the clip's length (see :data:`RATIO_DENOMINATOR`)."""
    rate = 2.0 ** (-semitones / 12)
    ratio = Fraction(rate).limit_denominator(RATIO_DENOMINATOR)
    return fit_length(torchaudio.functional.resample(time_stretch(wav, rate), ratio.denominator, ratio.numerator),
                      wav.shape[-1])


def fit_length(wav: torch.Tensor, n: int) -> torch.Tensor:
    """(B, samples) waveforms cropped (from the start) or padded with silence to ``n`` samples, as the spectral
    stretch crops or pads frames."""
    return torch.nn.functional.pad(wav[..., :n], (0, max(0, n - wav.shape[-1])))


def _resample(x: torch.Tensor, dim: int, step: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``x`` (B, bins, frames), each clip ``i`` with ``active[i]`` read along ``dim`` (1 or 2) at positions
    ``j * step[i]``, linearly interpolated; positions past the end read as 0 (silence). Other clips unchanged.
    The axis read is brought to the rows of a (B * size, rest) matrix, whose rows one index_select gathers: on
    the CPU 4x as fast as ``gather`` with a broadcast index, on a GPU one kernel either way."""
    rows = x if dim == 1 else x.transpose(1, 2)
    batch, size, rest = rows.shape
    flat = rows.reshape(batch * size, rest)
    pos = torch.arange(size, device=x.device, dtype=torch.float32) * step.float()[:, None]  # (B, size)
    lo = pos.floor().long()
    w, inside = (pos - lo).unsqueeze(-1), (lo < size).unsqueeze(-1)
    base = (torch.arange(batch, device=x.device) * size)[:, None]
    a = flat.index_select(0, (base + lo.clamp(max=size - 1)).flatten()).view(batch, size, rest)
    b = flat.index_select(0, (base + (lo + 1).clamp(max=size - 1)).flatten()).view(batch, size, rest)
    warped = torch.where(inside, a * (1 - w) + b * w, torch.zeros((), device=x.device, dtype=x.dtype))
    warped = torch.where(active.view(-1, 1, 1), warped, rows)
    return warped if dim == 1 else warped.transpose(1, 2)


class SpecAugment(nn.Module):
    """``freq_masks`` frequency masks up to ``freq_width`` mel bands wide and ``time_masks`` time masks up to
    ``time_width`` frames, each drawn per clip (torchaudio's masking with ``iid_masks``), set to 0."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.masks = [torchaudio.transforms.FrequencyMasking(cfg.spec_freq_width, iid_masks=True)
                      for _ in range(cfg.spec_freq_masks)]
        self.masks += [torchaudio.transforms.TimeMasking(cfg.spec_time_width, iid_masks=True)
                       for _ in range(cfg.spec_time_masks)]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        for mask in self.masks:
            feats = mask(feats)
        return feats


class TrainingBatches:
    """Turns the rows a training batch gathers into the batch the model sees.

    From waveforms (any waveform or spectral augmentation on): augment the waveforms, compute log-mels with the
    spectral warp, normalise with the un-augmented training statistics, mask. From features computed once
    (SpecAugment only): mask.

    With ``view_channels`` other than [original], :meth:`with_views` makes the loaders' inputs: the loader then
    serves row numbers, and each batch is made of the clips' views in ``view_channels`` order (one channel per
    window length each): the original view gathered from the features computed once, each augmented view drawn
    anew from the waveforms (or, SpecAugment only, from those features). With ``augmented_view: fixed`` every
    batch gathers the views drawn once instead: nothing is drawn during training.

    With ``keep_clean_copy``, the loader serves copy numbers instead (:meth:`copies`): each training clip once as
    its features computed once, once augmented.
    """

    def __init__(self, cfg: Config, device: torch.device, norm_stats: dict):
        self.cfg, self.stats, self.device = cfg, norm_stats, torch.device(device)
        self.from_waveforms = waveform_active(cfg)
        self.wave = waveform_transform(cfg) if self.from_waveforms else None
        if self.wave is not None:
            self.wave.to(device)
        warps = cfg.pitch_p > 0 or cfg.stretch_p > 0
        self.warp = SpectralWarp(cfg) if warps and cfg.warp_domain == "spectrogram" else None
        self.wave_warp = WaveformWarp(cfg) if warps and cfg.warp_domain == "waveform" else None
        self.logmel = frontend(cfg).to(device) if self.from_waveforms else None
        self.spec = SpecAugment(cfg).to(device) if spec_active(cfg) else None
        self.plain: torch.Tensor | None = None  # with views: the original view of every clip, normalised
        self.waveforms: torch.Tensor | None = None  # with views and waveform augmentations: every clip
        self.fixed: torch.Tensor | None = None  # augmented_view fixed: every clip's views, drawn once

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            return _gather(self.fixed, x, self.device).float()
        if self.plain is None:
            return self.augment(x)
        return self.copies(x) if self.cfg.keep_clean_copy else self.views(x)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented log-mels of ``x``: waveforms (B, samples), or log-mels (B, C, n_mels, frames) with SpecAugment
        only."""
        x = x.float()  # rows are stored in float16 on a GPU
        if self.from_waveforms:
            if self.wave is not None:
                x = self.wave(x.unsqueeze(1), sample_rate=self.cfg.sample_rate).samples.squeeze(1)
            if self.wave_warp is not None and self.cfg.resize_to:
                # As the Palanisamy code: a stretched clip keeps its length, and the front end's resize brings its
                # frames back to resize_to (a faster clip's sounds are stretched back over the whole input).
                mels = torch.empty(len(x), len(self.cfg.win_lengths), *self.cfg.resize_to, device=x.device)
                for rows, wav in self.wave_warp.groups(x):
                    mels[rows] = self.log_mels(wav)
            else:
                mels = self.log_mels(self.wave_warp(x) if self.wave_warp is not None else x)
            x = apply_normalization(mels, self.cfg.normalize, self.stats)
        return self.spec(x) if self.spec is not None else x

    def log_mels(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) waveforms -> their log-mels, with the spectral warps when on. On the CPU in chunks, as
        compute_features does: one STFT of a whole batch costs twice as much."""
        step = len(wav) if wav.device.type == "cuda" else cpu_chunk(self.cfg, wav.shape[1])
        return torch.cat([self.logmel(wav[i:i + step], self.warp) for i in range(0, len(wav), step)])

    def views(self, rows: torch.Tensor) -> torch.Tensor:
        """The clips ``rows`` as (B, n_channels, n_mels, frames): their views in ``view_channels`` order."""
        plain = _gather(self.plain, rows, self.device).float()
        out = []
        for view in self.cfg.view_channels:
            if view == "original":
                out.append(plain)
            elif self.from_waveforms:
                out.append(self.augment(_gather(self.waveforms, rows, self.device)))
            else:
                out.append(self.augment(plain.clone()))
        return torch.cat(out, dim=1)

    def copies(self, codes: torch.Tensor) -> torch.Tensor:
        """``keep_clean_copy``: the batch of clip copies ``codes`` (N + row: the augmented copy of row, else the
        clean copy), the clean ones gathered from the features computed once, the augmented ones drawn anew."""
        n = len(self.plain)
        rows = codes % n
        out = _gather(self.plain, rows, self.device).float()
        aug = (codes >= n).nonzero().flatten()
        if len(aug):
            src = _gather(self.waveforms, rows[aug], self.device) if self.from_waveforms else out[aug]
            out[aug] = self.augment(src)
        return out

    @torch.no_grad()
    def with_views(self, feats: torch.Tensor, waveforms: torch.Tensor | None,
                   batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The inputs of the validation loader and the source of the training loader, from the original view
        ``feats`` (normalised) of every clip and their ``waveforms`` (needed with waveform augmentations).

        With ``view_channels`` [original]: ``feats`` and ``waveforms`` unchanged. Otherwise every clip's views
        (N, n_channels, n_mels, frames), the augmented ones drawn once, from a seed derived from ``trial_num``
        (validation accuracy, TTA and predictions are deterministic), and the row numbers the training loader
        serves to :meth:`views`, which draws augmented views anew for each batch (``augmented_view: fixed``:
        training batches gather these same views). The original view is kept once: training batches gather it
        from the returned views.

        With ``keep_clean_copy``: ``feats`` and the 2N copy numbers the training loader serves to :meth:`copies`
        (:func:`~audiosweep.loaders.make_dls` serves each training clip's two)."""
        if self.cfg.keep_clean_copy:
            self.plain, self.waveforms = feats, waveforms
            return feats, torch.arange(2 * len(feats), device=self.device)
        if not multi_view(self.cfg):
            return feats, waveforms
        self.plain, self.waveforms = feats, waveforms
        n, shape = len(feats), (len(feats), self.cfg.n_channels, *feats.shape[2:])
        on_device = fits_on_device(math.prod(shape) * feats.dtype.itemsize, feats.device)  # as compute_features
        views = torch.empty(shape, dtype=feats.dtype, device=feats.device if on_device else "cpu",
                            pin_memory=self.device.type == "cuda" and not on_device)
        with fixed_seed(self.cfg, self.device):
            for i in range(0, n, batch_size):
                rows = torch.arange(i, min(i + batch_size, n), device=self.device)
                views[i:i + batch_size] = self.views(rows).to(views.device, views.dtype)
        if "original" in self.cfg.view_channels:
            first = self.cfg.view_channels.index("original") * feats.shape[1]
            self.plain = views[:, first:first + feats.shape[1]]
        if self.cfg.augmented_view == "fixed":
            self.fixed = views
        return views, torch.arange(n, device=self.device)


# Added to trial_num for the seed of the augmented views drawn once (validation, TTA, predict): not the seed of
# the run itself, whose first batches would otherwise draw the same augmentations.
VIEW_SEED_OFFSET = 104729


@contextlib.contextmanager
def fixed_seed(cfg: Config, device: torch.device):
    """Draws inside come from a seed derived from ``trial_num``; the run's own random streams (torch's on the CPU
    and ``device``, and Python's, which torch-audiomentations' ``Compose`` draws from) resume afterwards as if
    nothing had been drawn."""
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
            torch.manual_seed(cfg.trial_num + VIEW_SEED_OFFSET)
            random.seed(cfg.trial_num + VIEW_SEED_OFFSET)
            yield
    finally:
        random.setstate(state)


def fixed_views(feats: torch.Tensor, waveforms: torch.Tensor, cfg: Config, device: torch.device,
                norm_stats: dict) -> torch.Tensor:
    """Model inputs of clips outside training (a saved model's new clips): their views, the augmented ones drawn
    once from the run's fixed seed, from their normalised original view ``feats`` and their ``waveforms``."""
    if not multi_view(cfg):
        return feats
    return TrainingBatches(cfg, device, norm_stats).with_views(feats, waveforms)[0]


def _gather(source: torch.Tensor, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``source[rows]`` on ``device``; ``source`` may live in (pinned) host memory while ``device`` is a GPU."""
    return source.index_select(0, rows.to(source.device)).to(device, non_blocking=True)


def multi_view(cfg: Config) -> bool:
    """Whether the input holds views other than the original (``view_channels``)."""
    return list(cfg.view_channels) != ["original"]


def augmented(cfg: Config) -> bool:
    """Whether training batches are augmented at all (MixUp, a fastai callback, is not counted here)."""
    return waveform_active(cfg) or spec_active(cfg)
