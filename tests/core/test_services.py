"""The service specs and the config agree: a service added to one and not the other fails here, not
as a KeyError at render time."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.mailu_images import MAILU_IMAGES
from mailu_core.config import Images, Volumes
from mailu_core.render.env import SETTINGS, settings_read_by
from mailu_core.services import MAILU_SERVICES, SERVICES, service_spec


def test_every_image_field_has_a_spec_and_every_spec_an_image_field() -> None:
    assert {spec.image_field for spec in SERVICES} == set(Images.model_fields)


def test_every_volume_is_mounted_by_exactly_one_service() -> None:
    mounted = Counter(m.volume for spec in SERVICES for m in spec.mounts)
    assert set(mounted) == set(Volumes.model_fields)
    assert all(count == 1 for count in mounted.values()), mounted


def test_dependencies_and_setting_readers_name_known_services() -> None:
    names = {spec.name for spec in SERVICES}
    for spec in SERVICES:
        assert set(spec.depends_on) <= names - {spec.name}, spec.name
    for setting in SETTINGS:
        assert set(setting.readers) <= names, setting.name


def test_read_only_services_get_tmpfs_and_every_service_says_why() -> None:
    for spec in SERVICES:
        assert spec.why and all(line.startswith(f"{spec.name}: ") for line in spec.why[:1]), spec.name
        assert spec.read_only == bool(spec.tmpfs)
        assert ("not read_only" in " ".join(spec.why)) != spec.read_only, spec.name


def test_the_lab_builds_every_mailu_service_from_mailus_source() -> None:
    assert sorted(image.name for image in MAILU_IMAGES) == sorted(MAILU_SERVICES)


def test_settings_read_by_a_service_and_unknown_services() -> None:
    assert "DKIM_SELECTOR" in settings_read_by("admin")
    assert "DKIM_SELECTOR" not in settings_read_by("front")
    with pytest.raises(KeyError, match="no service 'mailman'"):
        service_spec("mailman")
