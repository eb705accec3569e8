"""A tiny EDM-style network (the interface of NVlabs/edm's EDMPrecond) for backend tests."""

import torch


class ToyEDMPrecond(torch.nn.Module):
    """D(x; sigma, class_labels) = c_skip·x + c_out·F(c_in·x), F a conv biased by the one-hot label."""

    def __init__(self, img_resolution=8, img_channels=3, label_dim=5, sigma_data=0.5):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
        self.sigma_min, self.sigma_max, self.sigma_data = 0, float("inf"), sigma_data
        self.conv = torch.nn.Conv2d(img_channels, img_channels, 3, padding=1)
        self.label = torch.nn.Linear(label_dim, img_channels)

    def forward(self, x, sigma, class_labels=None):
        sigma = sigma.reshape(-1, 1, 1, 1)
        sd2 = self.sigma_data**2
        c_skip, c_out = sd2 / (sigma**2 + sd2), sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        f = self.conv(x / (sigma**2 + sd2).sqrt()) + self.label(class_labels)[:, :, None, None]
        return c_skip * x + c_out * f
