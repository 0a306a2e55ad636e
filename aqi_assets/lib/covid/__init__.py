"""COVID-19 analytics: the three JHU CSSE queries, k-means, continents, figures."""
