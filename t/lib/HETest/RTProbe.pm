package HETest::RTProbe;

# A test-only RT plugin: HETest::RT lists it in @Plugins of its throwaway
# RT, before RT::Extension::HealthEndpoint (so it wraps RT's app first and
# the health paths never reach it).  GET /hetest/probe (under $WebPath)
# answers, from inside the worker that serves it, what that worker loaded:
#
#   pid, ppid, perl ($^X), program ($0)
#   rt_version                $RT::VERSION
#   module_file               $INC{'RT/Extension/HealthEndpoint.pm'}
#   shared_objects            the HealthEndpoint.so files mapped into this
#                             process (/proc/self/maps)
#   plugins                   RT's @Plugins
#   plugin_path, local_plugin_path, plugin_lib_dirs (RT->PluginDirs('lib'))
#   inc                       @INC
#
# as JSON.  Any other path goes to RT untouched.  Never load it in a real RT.

use strict;
use warnings;

our $PATH = '/hetest/probe';

sub PSGIWrap {
    my ($class, $app) = @_;
    return sub {
        my ($env) = @_;
        return $app->($env) unless ($env->{PATH_INFO} // '') eq $PATH;
        my $body = eval { report() } // do {
            require JSON::PP;
            JSON::PP->new->encode({ error => "$@" });
        };
        return [ 200, [ 'Content-Type' => 'application/json',
                        'Cache-Control' => 'no-store',
                        'Content-Length' => length $body ], [ $body ] ];
    };
}

sub report {
    require JSON::PP;
    my @so;
    if (open my $fh, '<', '/proc/self/maps') {
        my %seen;
        while (my $l = <$fh>) {
            push @so, $1 if $l =~ m{\s(/\S*/HealthEndpoint\.so)$} && !$seen{$1}++;
        }
    }
    no warnings 'once';
    my %r = (
        pid => $$, ppid => getppid(), perl => $^X, program => $0,
        rt_version => $RT::VERSION,
        module_file => $INC{'RT/Extension/HealthEndpoint.pm'},
        shared_objects => \@so,
        plugins => [ RT->Config->Get('Plugins') ],
        plugin_path => $RT::PluginPath,
        local_plugin_path => $RT::LocalPluginPath,
        plugin_lib_dirs => [ RT->PluginDirs('lib') ],
        inc => [ grep { !ref } @INC ],
    );
    return JSON::PP->new->canonical->encode(\%r);
}

1;
