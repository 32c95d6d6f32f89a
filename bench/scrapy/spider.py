"""The Scrapy side of the crawl benchmark (`crawl_bench`, in the integration-tests crate).

Crawls the benchmark's loopback site from START_URL with the rules the pipeline's crawl is
given, so that both fetch the same pages:

- same host only (`allowed_domains`), robots.txt obeyed, `rel=nofollow` links skipped;
- links from `<a>`, `<area>` and `<link>` (canonical, `rel=next`), fragments dropped,
  the pipeline's default tracking parameters stripped (`utm_*`, `gclid`, ...);
- at most MAX_QUERY_VARIANTS distinct query strings per path and MAX_PATH_DEPTH path
  segments (the pipeline's trap caps), and DEPTH_LIMIT link hops;
- CONCURRENCY requests in flight, all on the one host, no download delay.

Prints one JSON line: responses parsed, the seconds from the first request to the last
response parsed (the crawl proper, without the interpreter's start), and the wall seconds of
the whole process. Usage: python spider.py START_URL CONCURRENCY MAX_DEPTH
"""

import json
import sys
import time
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor
from w3lib.url import url_query_cleaner

WALL_START = time.monotonic()

TRACKING = ["gclid", "dclid", "fbclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl", "yclid"]
MAX_QUERY_VARIANTS = 5
MAX_PATH_DEPTH = 6


def strip_tracking(url):
    url = url_query_cleaner(url, TRACKING, remove=True, keep_fragments=False)
    parts = urlsplit(url)
    if parts.query and "utm_" in parts.query:
        kept = [
            kv for kv in parts.query.split("&") if not kv.split("=", 1)[0].startswith("utm_")
        ]
        url = parts._replace(query="&".join(kept)).geturl()
    return url


class SiteSpider(Spider):
    name = "site"

    def __init__(self, start_url, **kw):
        super().__init__(**kw)
        self.start_url = start_url
        self.allowed_domains = [urlsplit(start_url).hostname]
        self.links = LinkExtractor(tags=("a", "area", "link"), attrs=("href",), unique=True)
        self.variants = {}
        self.first = None
        self.last = None
        self.parsed = 0

    async def start(self):
        self.first = time.monotonic()
        yield Request(self.start_url, callback=self.parse)

    def admit(self, url):
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) > MAX_PATH_DEPTH:
            return False
        key = (parts.scheme, parts.netloc, parts.path)
        seen = self.variants.setdefault(key, set())
        if parts.query in seen:
            return True
        if len(seen) >= MAX_QUERY_VARIANTS:
            return False
        seen.add(parts.query)
        return True

    def parse(self, response):
        self.parsed += 1
        self.last = time.monotonic()
        for link in self.links.extract_links(response):
            if link.nofollow:
                continue
            url = strip_tracking(link.url)
            if self.admit(url):
                yield Request(url, callback=self.parse)


def main():
    start_url, concurrency, max_depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    process = CrawlerProcess(
        settings={
            "LOG_LEVEL": "WARNING",
            "ROBOTSTXT_OBEY": True,
            "CONCURRENT_REQUESTS": concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "DEPTH_LIMIT": max_depth,
            "TELNETCONSOLE_ENABLED": False,
            "COOKIES_ENABLED": False,
            "RETRY_ENABLED": False,
        }
    )
    crawler = process.create_crawler(SiteSpider)
    process.crawl(crawler, start_url=start_url)
    process.start()
    spider = crawler.spider
    print(
        json.dumps(
            {
                "parsed": spider.parsed,
                "seconds": (spider.last or spider.first) - spider.first,
                "wall_seconds": time.monotonic() - WALL_START,
            }
        )
    )


if __name__ == "__main__":
    main()
