"""The bench: titok's methods compared cell by cell on real tasks (`titok bench`).

Not part of the library (`titok` never imports it; its command does): `runner` computes the
cells, `report` renders tables and charts from them alone, `suites` reads the YAML suites in
`suites/` (the default one, TiTok's ablations, the legacy query writing).
"""
