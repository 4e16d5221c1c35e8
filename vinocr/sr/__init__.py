"""Super-resolution front end for low-resolution licence plates.

An LP-ASRN-style generator (:mod:`vinocr.sr.generator`) is trained in progressive stages
(:mod:`vinocr.sr.trainer`) with the layout- and character-oriented loss LCOFL
(:mod:`vinocr.sr.lcofl`), back-propagated through the toolkit's own recogniser. Tracks of several LR
frames are recognised frame by frame and fused (:mod:`vinocr.sr.fusion`).
"""
