#!/bin/sh
# Runs inside the debootstrapped root filesystem of the Python 3.11 base image (training/base_image.py).
# It plays the part of python:3.11-slim: Debian's python3 (3.11 on bookworm) with pip, security updates applied,
# no documentation or package lists. /etc/apt/sources.list.d/debian.sources was written from the host's configured
# mirror before this runs; it stays, so a Bento's system packages install from the same mirror.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# Like debian:*-slim: no docs, man pages or translations from this or any later package install.
cat > /etc/dpkg/dpkg.cfg.d/01-mlops-slim <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
cat > /etc/apt/apt.conf.d/01-mlops-slim <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
CFG
rm -f /etc/apt/sources.list

apt-get update -q
apt-get -q -y -o Dpkg::Options::=--force-confold dist-upgrade

# The image's pip installs system-wide, as in python:3.11-slim (BentoML's build installs uv with it).
rm -f /usr/lib/python3.*/EXTERNALLY-MANAGED

apt-get clean
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/* /tmp/* /root/.cache
find / -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
# The host's name and resolver are not the image's: container runtimes provide their own.
rm -f /etc/resolv.conf /etc/hostname
