"""Training of every SemantiCodec part, one module per stage.

Stages and what each exports (keys of :class:`~semanticodec.model.SemantiCodecModel`):

1. :mod:`~semanticodec.train.mae` — AudioMAE masked-autoencoder pre-training → ``audiomae.*``.
2. :mod:`~semanticodec.train.codebook` — AudioMAE features → ``kmeans`` → semantic codebook ``.npy``.
3. :mod:`~semanticodec.train.vae` — mel VAE (reconstruction + KL [+ adversarial]) → ``vae.*``.
4. :mod:`~semanticodec.train.vocoder` — HiFi-GAN with MPD/MSD discriminators → ``vocoder.*``.
5. :mod:`~semanticodec.train.ldm` — acoustic encoder + VQ with the latent diffusion UNet
   (v-prediction, condition dropout) → ``acoustic.*``, ``unet.*``, ``schedule.*``.

:mod:`~semanticodec.train.assemble` joins the stage outputs into one inference file;
:mod:`~semanticodec.train.pack` and :mod:`~semanticodec.train.burst` train stage 5 on a GPU
lent for minutes (a travel pack goes there, weights come back). The
shared loop (resumable checkpoints, CSV log, progress, DDP under ``torchrun``) is
:mod:`~semanticodec.train.loop`; audio crops come from :mod:`~semanticodec.train.data`.
"""
