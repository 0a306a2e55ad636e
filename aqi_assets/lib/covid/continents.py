"""Continent of a (longitude, latitude) point: Esri World Continents polygons, then bounding boxes.

The shapefile is read with pyshp straight from its zip (no temporary files), converted to shapely
geometries and tested with shapely's vectorised `intersects_xy` (boundary points count as inside).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapefile  # pyshp
import shapely
from shapely.geometry import shape

# The queries' continent names: Esri's Australia joins Oceania, both Americas are one.
CONTINENT_ALIASES = {"Australia": "Oceania", "North America": "America", "South America": "America"}

# Fallback for points no polygon contains (islands the generalised polygons miss, ships at sea), tested in
# this order: (name, lat_min, lat_max, lon_min, lon_max), bounds inclusive.
BOUNDING_BOXES: tuple[tuple[str, float, float, float, float], ...] = (
    ("Africa", -34.0, 37.0, -17.0, 51.0),
    ("Europe", 34.0, 82.0, -25.0, 60.0),
    ("America", -56.0, 71.0, -168.0, -34.0),
    ("Asia", -1.0, 81.0, 25.0, 171.0),
    ("Oceania", -50.0, 10.0, 110.0, 180.0),
    ("Antarctica", -90.0, -60.0, -180.0, 180.0),
)

METHOD_POLYGON = "polygon"
METHOD_BBOX = "bounding_box"
METHOD_NONE = "unassigned"


class ContinentsError(ValueError):
    """The continents file is not a usable World Continents shapefile."""


@dataclass(frozen=True)
class ContinentPolygons:
    names: tuple[str, ...]  # mapped names (aliases applied), in shapefile order
    source_names: tuple[str, ...]  # the CONTINENT field as stored
    geometries: tuple[shapely.Geometry, ...]


def continent_name(source_name: str) -> str:
    return CONTINENT_ALIASES.get(source_name, source_name)


def load_continents(source: bytes | str | Path, field: str = "CONTINENT") -> ContinentPolygons:
    """Read the polygons from a zipped shapefile (bytes or path)."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise ContinentsError(f"continents file is not a zip archive ({error})") from error
    members = {Path(name).suffix.lower(): name for name in archive.namelist() if not name.startswith("__MACOSX")}
    missing = [suffix for suffix in (".shp", ".shx", ".dbf") if suffix not in members]
    if missing:
        raise ContinentsError(f"continents zip lacks the shapefile part(s) {missing}; members: {archive.namelist()}")
    try:
        reader = shapefile.Reader(
            shp=io.BytesIO(archive.read(members[".shp"])),
            shx=io.BytesIO(archive.read(members[".shx"])),
            dbf=io.BytesIO(archive.read(members[".dbf"])),
        )
        field_names = [f[0] for f in reader.fields[1:]]
        if field not in field_names:
            raise ContinentsError(f"continents shapefile has no {field!r} field (fields: {field_names})")
        source_names: list[str] = []
        geometries: list[shapely.Geometry] = []
        for item in reader.iterShapeRecords():
            if item.shape.shapeType == shapefile.NULL:
                continue
            geometry = shape(item.shape.__geo_interface__)
            if not geometry.is_valid:
                geometry = shapely.make_valid(geometry)
            source_names.append(str(item.record[field]).strip())
            geometries.append(geometry)
    except ContinentsError:
        raise
    except Exception as error:  # pyshp raises plain exceptions on corrupt files
        raise ContinentsError(f"continents shapefile could not be read: {error}") from error
    if not geometries:
        raise ContinentsError("continents shapefile holds no polygons")
    for geometry in geometries:
        shapely.prepare(geometry)  # builds the spatial index used by the vectorised predicates
    return ContinentPolygons(
        tuple(continent_name(name) for name in source_names), tuple(source_names), tuple(geometries)
    )


def assign_continents(
    longitudes: np.ndarray, latitudes: np.ndarray, polygons: ContinentPolygons
) -> tuple[np.ndarray, np.ndarray]:
    """(continent, method) per point; continent is None where neither a polygon nor a box matches."""
    lon = np.asarray(longitudes, dtype=np.float64)
    lat = np.asarray(latitudes, dtype=np.float64)
    continents = np.full(lon.shape, None, dtype=object)
    methods = np.full(lon.shape, METHOD_NONE, dtype=object)
    valid = np.isfinite(lon) & np.isfinite(lat)
    for name, geometry in zip(polygons.names, polygons.geometries, strict=True):
        todo = valid & (methods == METHOD_NONE)
        if not todo.any():
            break
        hit = np.zeros(lon.shape, dtype=bool)
        hit[todo] = shapely.intersects_xy(geometry, lon[todo], lat[todo])
        continents[hit] = name
        methods[hit] = METHOD_POLYGON
    for name, lat_min, lat_max, lon_min, lon_max in BOUNDING_BOXES:
        todo = valid & (methods == METHOD_NONE)
        hit = todo & (lat >= lat_min) & (lat <= lat_max) & (lon >= lon_min) & (lon <= lon_max)
        continents[hit] = name
        methods[hit] = METHOD_BBOX
    return continents, methods
