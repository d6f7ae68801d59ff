"""Stage 7: data card (``DATA_CARD.md`` + ``data_card.json``) from the manifests."""

from __future__ import annotations

import json
import os
import shutil
import time

SPLITS = ["train", "train_short", "dev", "test_heldout", "asterisk", "asterisk_letters"]

LICENCES = [
    ("fortune-mod / fortunes (text)", "BSD-4-clause and various (Debian main); sentences only"),
    ("WordNet 3.0 examples (wordnet-base, text)", "WordNet 3.0 licence (permissive, attribution)"),
    ("espeak-ng", "GPL-3.0-or-later"),
    ("MBROLA voices (us1-3, en1, de1-6, fr1, fr4, nl2, pl1, ro1, hu1, gr2, sw1, af1)",
     "non-commercial use only (Debian non-free)"),
    ("festival + festvox kal/ked/rab/don/slt-hts", "festival: X11-style; voices: free (Debian main/contrib)"),
    ("festvox-us1/us2/us3/en1 (festival MBROLA voices)", "contrib; depend on non-commercial MBROLA databases"),
    ("festlex-oald (festival British lexicon)", "non-free"),
    ("flite (kal16, awb, rms, slt)", "BSD-like (CMU)"),
    ("pico2wave (libttspico, held-out test only)", "Apache-2.0 (Debian non-free package)"),
    ("RHVoice alan/bdl/clb/slt (held-out test only)", "RHVoice: LGPL-2.1+; voices from CMU ARCTIC (BSD-like)"),
    ("RHVoice evgeniy-eng, lyubov (held-out test only)", "CC-BY-NC-ND-4.0"),
    ("Piper en_US-joe-medium (held-out test only)", "piper-tts MIT/GPL; voice dataset CC0 (model card)"),
    ("Asterisk core sounds (Allison Smith, dev/test only)", "CC-BY-SA-3.0"),
    ("Asterisk music on hold (opsound, augmentation)", "CC-BY-SA (opsound.org, see package copyright)"),
]


def _summ(recs: list[dict]) -> dict:
    by_engine: dict[str, dict] = {}
    by_voice: dict[str, dict] = {}
    for r in recs:
        for key, table in ((r["engine"], by_engine), (r["voice"], by_voice)):
            t = table.setdefault(key, {"utterances": 0, "hours": 0.0})
            t["utterances"] += 1
            t["hours"] += r["duration"] / 3600
    for table in (by_engine, by_voice):
        for t in table.values():
            t["hours"] = round(t["hours"], 4)
    return {"utterances": len(recs), "hours": round(sum(r["duration"] for r in recs) / 3600, 4),
            "voices": len(by_voice), "engines": sorted(by_engine),
            "mean_seconds": round(sum(r["duration"] for r in recs) / max(1, len(recs)), 2),
            "by_engine": dict(sorted(by_engine.items())), "by_voice": dict(sorted(by_voice.items()))}


def write_data_card(data_dir: str, repo_copy: str | None = None) -> dict:
    card = {"data_dir": data_dir, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "splits": {}}
    for s in SPLITS:
        path = os.path.join(data_dir, f"{s}.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                card["splits"][s] = _summ([json.loads(line) for line in f if line.strip()])
    for name in ("text/stats.json", "stage_times.json", "aug/aug.json"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            with open(p) as f:
                card[name.split("/")[-1].replace(".json", "")] = json.load(f)
    with open(os.path.join(data_dir, "data_card.json"), "w") as f:
        json.dump(card, f, indent=1)

    L = ["# Data card: offline speech corpus (recipes/synth)", "",
         f"Generated {card['generated']} by `recipes/synth/prepare.py` into `{data_dir}`.", "",
         "All audio 16 kHz mono 16-bit PCM. Texts are normalised with `asr.text.normalize` "
         "(lower-case a-z, apostrophe, space).", "",
         "Training engines: espeak-ng (formant), espeak-ng+MBROLA, festival, flite. "
         "Held-out synthetic test engines (never in training): pico2wave, Piper (joe), RHVoice. "
         "Real speech (never in training): Asterisk prompts, one female speaker. "
         "Train/dev/test sentences come from disjoint text pools.", "",
         "## Totals", "", "| split | utterances | hours | mean s | voices | engines |", "|---|---:|---:|---:|---:|---|"]
    for s, d in card["splits"].items():
        L.append(f"| {s} | {d['utterances']} | {d['hours']:.2f} | {d['mean_seconds']} | {d['voices']} | "
                 f"{', '.join(d['engines'])} |")
    if "stats" in card:
        st = card["stats"]
        L += ["", "## Text pools", "",
              f"Candidates {st['candidates']}; kept before de-duplication {st['kept_before_dedup']}; "
              f"pools (unique normalised sentences) {st['pools']}."]
    for s, d in card["splits"].items():
        L += ["", f"## {s}: per engine", "", "| engine | utterances | hours | share |", "|---|---:|---:|---:|"]
        for e, t in d["by_engine"].items():
            L.append(f"| {e} | {t['utterances']} | {t['hours']:.2f} | {100 * t['hours'] / max(d['hours'], 1e-9):.1f}% |")
        if s in ("asterisk", "asterisk_letters"):
            continue
        L += ["", f"<details><summary>{s}: per voice ({d['voices']} voices)</summary>", "",
              "| voice | utterances | hours |", "|---|---:|---:|"]
        for v, t in d["by_voice"].items():
            L.append(f"| {v} | {t['utterances']} | {t['hours']:.3f} |")
        L += ["", "</details>"]
    if "stage_times" in card:
        L += ["", "## Wall time per stage (2 cores)", "", "| stage | seconds |", "|---|---:|"]
        for n, t in sorted(card["stage_times"].items()):
            L.append(f"| {n} {t['stage']} | {t['seconds']} |")
    if "aug" in card:
        a = card["aug"]
        L += ["", "## Augmentation material", "",
              f"Music on hold: {len(a['moh'])} tracks, {sum(m['seconds'] for m in a['moh']) / 60:.1f} min. "
              f"Room impulse responses: {a['rirs']['n']} simulated rooms, RT60 "
              f"{a['rirs']['rt60_range'][0]:.2f}-{a['rirs']['rt60_range'][1]:.2f} s."]
    L += ["", "## Sources and licences", "", "| source | licence |", "|---|---|"]
    L += [f"| {a} | {b} |" for a, b in LICENCES]
    L += ["", "A model trained on `train` inherits the non-commercial restriction of the MBROLA voices "
          "(and festlex-oald is non-free): record these in its model card.", ""]
    path = os.path.join(data_dir, "DATA_CARD.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(L))
    os.replace(path + ".tmp", path)
    if repo_copy:
        shutil.copyfile(path, repo_copy)
    return card
