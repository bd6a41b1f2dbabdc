"""What every package leans on: settings, clock, money, errors, translations, the unit of
work, data protection, signing, QR images and the job runner."""
