"""The published TIMIT evaluation speaker lists.

Source: kaldi-asr/kaldi egs/timit/s5/conf/test_spk.list (24 core-test speakers) and
conf/dev_spk.list (50 dev speakers); SpeechBrain's recipes/TIMIT/timit_prepare.py holds the
same sets. Both lists are drawn from TIMIT's TEST directory; the training set is every
speaker under TRAIN (462 speakers). The core-test list is ordered by dialect region, three
speakers (one woman, two men) per region.
"""

CORE_TEST_SPEAKERS: tuple[str, ...] = tuple(
    "mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0 fpkt0 mlll0 mtls0 fjlm0 "
    "mbpm0 mklt0 fnlp0 mcmj0 mjdh0 fmgd0 mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0".split()
)

DEV_SPEAKERS: tuple[str, ...] = tuple(
    "faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0 mbdg0 mbwm0 mcsh0 fadg0 "
    "fdms0 fedw0 mgjf0 mglb0 mrtk0 mtaa0 mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 "
    "mdls0 mdlf0 mdvc0 mers0 fmah0 fdrw0 mrcs0 mrjm4 fcal1 mmwh0 fjsj0 majc0 mjsw0 mreb0 "
    "fgjd0 fjmg0 mroa0 mteb0 mjfc0 mrjr0 fmml0 mrws1".split()
)

# Published sizes (speakers, utterances without SA) used to check a complete tree.
SPLIT_SIZES = {
    "train": (462, 3696),
    "dev": (50, 400),
    "test": (24, 192),
    "test_full": (168, 1344),
}
