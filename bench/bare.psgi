# bench/bare.psgi - the trivial app every benchmark compares against: a
# fixed small text/plain answer with the same headers as the module's ping
# (Content-Type, Content-Length, Cache-Control), so that over HTTP the
# server has the same work to do for both and any difference is the
# wrapper's.
my $app = sub {
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => 5,
                  'Cache-Control' => 'no-store'],
            ['hello']];
};
